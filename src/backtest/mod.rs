//! `earlykill backtest`: recorded history folded again under other
//! thresholds, and what each set would have killed, how early and how well.
//!
//! The input topics are read once ([`read`]), each record decoded and
//! validated once, each partition's records merged in event-time order
//! exactly as the processor merges a backlog ([`earlykill_core::merge`]).
//! Then every (parameter set, partition) pair is folded through the same
//! [`Monitor`] that decides live, in parallel on a rayon pool, and summed
//! into one [`SetReport`] per set ([`output`] prints, writes and draws
//! them).
//!
//! The truth the sets are scored against is a fold too: the same history
//! with killing switched off (threshold 0), every session running its full
//! window, and each session's **final rate** read from the decision that
//! ends it there. A session is **poor at the end** when its final rate is
//! below `truth_threshold × expected`.

pub mod output;
pub mod read;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use earlykill_core::event::DecisionKind;
use earlykill_core::event::{
    Interaction, Millis, MonitoringDecision, StopMonitoring, VariantPosted,
};
use earlykill_core::monitor::rule::Thresholds;
use earlykill_core::monitor::{Input, Monitor, MonitorConfig};

/// One recorded input event, owned (decoded once, folded once per set).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// From the posted topic.
    Posted(VariantPosted<'static>),
    /// From the interactions topic.
    Interaction(Interaction<'static>),
    /// From the commands topic.
    Stop(StopMonitoring<'static>),
}

impl Event {
    fn input(&self) -> Input<'_, 'static> {
        match self {
            Event::Posted(p) => Input::Posted(p),
            Event::Interaction(i) => Input::Interaction(i),
            Event::Stop(s) => Input::Stop(s),
        }
    }

    /// The event time it carries.
    pub fn time(&self) -> Millis {
        self.input().event_time()
    }
}

/// One partition's inputs in the order the processor folds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The partition.
    pub partition: i32,
    /// Its events, merged.
    pub events: Vec<Event>,
}

/// One parameter set: the rule's three global defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParamSet {
    /// Kill below this fraction of the expected rate.
    pub kill_threshold: f64,
    /// No kill before this many interactions.
    pub min_interactions: u32,
    /// Length of the window.
    pub timeout_minutes: u32,
}

/// Every combination of the given values, thresholds varying slowest.
pub fn grid(thresholds: &[f64], minimums: &[u32], timeouts: &[u32]) -> Vec<ParamSet> {
    let mut sets = Vec::new();
    for &kill_threshold in thresholds {
        for &min_interactions in minimums {
            for &timeout_minutes in timeouts {
                sets.push(ParamSet {
                    kill_threshold,
                    min_interactions,
                    timeout_minutes,
                });
            }
        }
    }
    sets
}

/// How the sets are folded and scored.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sets.
    pub sets: Vec<ParamSet>,
    /// Everything but the three defaults (hold limits, retention), as the
    /// processor is configured.
    pub base: MonitorConfig,
    /// At the end, every partition's clock is moved to this time (sessions
    /// whose window ends before it time out); `None` leaves them open.
    pub close_at: Option<Millis>,
    /// The truth's threshold: a session is poor at the end when its final
    /// rate is below this fraction of its expected rate.
    pub truth_threshold: f64,
}

/// What one set would have done over the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetReport {
    /// Kill threshold.
    pub kill_threshold: f64,
    /// Minimum interactions.
    pub min_interactions: u32,
    /// Window, minutes.
    pub timeout_minutes: u32,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions killed.
    pub killed: u64,
    /// Sessions that reached the end of their window.
    pub timed_out: u64,
    /// Sessions an operator stopped.
    pub stopped: u64,
    /// Sessions still open when their partition's input ended.
    pub open: u64,
    /// Median time from posting to kill, seconds of event time.
    pub kill_p50_s: Option<f64>,
    /// 90th percentile of the time from posting to kill, seconds.
    pub kill_p90_s: Option<f64>,
    /// Sessions poor at the end (by the truth).
    pub poor: u64,
    /// Killed sessions that were poor at the end.
    pub killed_poor: u64,
    /// `killed_poor / killed`; `None` with no kill.
    pub precision: Option<f64>,
    /// `killed_poor / poor`; `None` with no poor session.
    pub recall: Option<f64>,
    /// Views each kill saved (views over the full window minus views at
    /// the kill), summed.
    pub views_saved: i64,
    /// The ranking score: F1, the harmonic mean of precision and recall (0
    /// when either is missing or both are 0).
    pub score: f64,
}

/// A session's figures over its full window, by `(variant_id, posted_at)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Truth {
    poor: bool,
    views: i64,
}

type Truths = BTreeMap<(String, Millis), Truth>;

/// One set's tallies over some partitions, summed across partitions.
#[derive(Debug, Clone, Default)]
struct Tally {
    sessions: u64,
    killed: u64,
    timed_out: u64,
    stopped: u64,
    poor: u64,
    killed_poor: u64,
    views_saved: i64,
    kill_ms: Vec<Millis>,
}

impl Tally {
    fn add(mut self, other: Tally) -> Tally {
        self.sessions += other.sessions;
        self.killed += other.killed;
        self.timed_out += other.timed_out;
        self.stopped += other.stopped;
        self.poor += other.poor;
        self.killed_poor += other.killed_poor;
        self.views_saved += other.views_saved;
        self.kill_ms.extend(other.kill_ms);
        self
    }

    fn report(mut self, set: ParamSet) -> SetReport {
        self.kill_ms.sort_unstable();
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let precision = ratio(self.killed_poor, self.killed);
        let recall = ratio(self.killed_poor, self.poor);
        let score = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => 2.0 * p * r / (p + r),
            _ => 0.0,
        };
        let ended = self.killed + self.timed_out + self.stopped;
        SetReport {
            kill_threshold: set.kill_threshold,
            min_interactions: set.min_interactions,
            timeout_minutes: set.timeout_minutes,
            sessions: self.sessions,
            killed: self.killed,
            timed_out: self.timed_out,
            stopped: self.stopped,
            open: self.sessions.saturating_sub(ended),
            kill_p50_s: quantile(&self.kill_ms, 0.5),
            kill_p90_s: quantile(&self.kill_ms, 0.9),
            poor: self.poor,
            killed_poor: self.killed_poor,
            precision,
            recall,
            views_saved: self.views_saved,
            score,
        }
    }
}

/// The `q` quantile of sorted milliseconds, in seconds (nearest rank).
fn quantile(sorted: &[Millis], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1000.0)
}

fn monitor(base: &MonitorConfig, defaults: Thresholds) -> Monitor {
    Monitor::new(MonitorConfig { defaults, ..*base })
}

/// Events handed to [`Monitor::apply_batch`] at once.
const BATCH: usize = 256;

/// Folds `history` with `set`, appending every decision to `out`.
pub fn fold(
    history: &History,
    set: ParamSet,
    options: &Options,
    out: &mut Vec<MonitoringDecision>,
) {
    let mut m = monitor(
        &options.base,
        Thresholds {
            kill_threshold: set.kill_threshold,
            min_interactions: set.min_interactions,
            timeout_minutes: set.timeout_minutes,
        },
    );
    // The same fold as event by event, with each group's lookups
    // prefetched together (see `Monitor::apply_batch`).
    let mut inputs = Vec::with_capacity(BATCH);
    for events in history.events.chunks(BATCH) {
        inputs.clear();
        inputs.extend(events.iter().map(Event::input));
        m.apply_batch(&inputs, out, |_, _, _| {});
    }
    if let Some(at) = options.close_at {
        m.advance_to(at, out);
    }
}

/// The truth for sets whose window is `timeout_minutes`: the history with
/// killing switched off (a rate is never below 0, and the posts' own
/// thresholds are set aside), run to the end of every window.
fn truth(history: &History, timeout_minutes: u32, options: &Options) -> Truths {
    let mut m = monitor(
        &options.base,
        Thresholds {
            kill_threshold: 0.0,
            min_interactions: 1,
            timeout_minutes,
        },
    );
    let mut decisions = Vec::new();
    for event in &history.events {
        match event {
            Event::Posted(p) if p.kill_threshold.is_some() => {
                let mut p = p.clone();
                p.kill_threshold = None;
                m.apply(Input::Posted(&p), &mut decisions);
            }
            other => {
                m.apply(other.input(), &mut decisions);
            }
        }
    }
    // Far past every window, without overflowing a deadline sum.
    m.advance_to(Millis::MAX / 4, &mut decisions);
    decisions
        .into_iter()
        .filter(|d| d.kind != DecisionKind::Started)
        .map(|d| {
            let poor = d
                .engagement_rate
                .is_some_and(|rate| rate < options.truth_threshold * d.expected_engagement_rate);
            (
                (d.variant_id, d.posted_at),
                Truth {
                    poor,
                    views: d.views,
                },
            )
        })
        .collect()
}

/// One set over one partition: its decisions, tallied against the truth.
fn tally(history: &History, set: ParamSet, options: &Options, truths: &Truths) -> Tally {
    let mut decisions = Vec::new();
    fold(history, set, options, &mut decisions);
    let mut t = Tally::default();
    for d in &decisions {
        let truth = truths.get(&(d.variant_id.clone(), d.posted_at));
        match d.kind {
            DecisionKind::Started => {
                t.sessions += 1;
                t.poor += u64::from(truth.is_some_and(|t| t.poor));
            }
            DecisionKind::Killed => {
                t.killed += 1;
                t.kill_ms.push(d.decided_at - d.posted_at);
                if let Some(truth) = truth {
                    t.killed_poor += u64::from(truth.poor);
                    t.views_saved += (truth.views - d.views).max(0);
                }
            }
            DecisionKind::TimedOut => t.timed_out += 1,
            DecisionKind::Stopped => t.stopped += 1,
        }
    }
    t
}

/// Every set's report over `histories`, folding on the current rayon pool.
/// Reports are in the order of `options.sets`.
pub fn run(histories: &[History], options: &Options) -> Vec<SetReport> {
    run_with_progress(histories, options, &|_, _| {})
}

/// [`run`], calling `progress(done, total)` as each set's fold of each
/// partition finishes (from the folding threads).
pub fn run_with_progress(
    histories: &[History],
    options: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<SetReport> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut timeouts: Vec<u32> = options.sets.iter().map(|s| s.timeout_minutes).collect();
    timeouts.sort_unstable();
    timeouts.dedup();
    // Truth per (partition, window length).
    let truths: Vec<Vec<Truths>> = histories
        .par_iter()
        .map(|h| {
            timeouts
                .par_iter()
                .map(|&minutes| truth(h, minutes, options))
                .collect()
        })
        .collect();
    let pairs: Vec<(usize, usize)> = (0..options.sets.len())
        .flat_map(|s| (0..histories.len()).map(move |h| (s, h)))
        .collect();
    let tallies: Vec<(usize, Tally)> = pairs
        .par_iter()
        .map(|&(s, h)| {
            let set = options.sets[s];
            let window = timeouts
                .binary_search(&set.timeout_minutes)
                .expect("every set's window has a truth");
            let tallied = tally(&histories[h], set, options, &truths[h][window]);
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(finished, pairs.len());
            (s, tallied)
        })
        .collect();
    let mut sums: Vec<Tally> = vec![Tally::default(); options.sets.len()];
    for (s, t) in tallies {
        sums[s] = std::mem::take(&mut sums[s]).add(t);
    }
    sums.into_iter()
        .zip(&options.sets)
        .map(|(t, set)| t.report(*set))
        .collect()
}

/// The reports best first: by score, then views saved, then the earlier
/// median kill.
pub fn ranked(mut reports: Vec<SetReport>) -> Vec<SetReport> {
    reports.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.views_saved.cmp(&a.views_saved))
            .then(
                a.kill_p50_s
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.kill_p50_s.unwrap_or(f64::MAX)),
            )
    });
    reports
}

/// The caveat every report carries.
pub const CAVEAT: &str = "History recorded while a live policy was killing has no traffic after \
those real kills, so the final rates of sessions killed live are cut short at their kill: \
score against a hold-out share (--holdout-share, with the processor's) for unbiased figures.";
