//! Property tests of the fold over random multi-variant event sequences.
//!
//! The oracle below is the rule and the time semantics of README.md written
//! as plainly as possible: sessions in a `Vec`, timeouts found by scanning
//! every session, held interactions in arrival order. The fold must agree
//! with it decision by decision.

use std::collections::BTreeMap;

use earlykill_core::event::codec::{self, Decoder};
use earlykill_core::event::{
    ChangelogRecord, Contract, DecisionKind, InputOffsets, InteractionKind, Millis,
    MonitoringDecision, StopMonitoring, VariantPosted,
};
use earlykill_core::monitor::rule::Thresholds;
use earlykill_core::monitor::{Input, Monitor, MonitorConfig, Rebuild, Rebuilt};
use proptest::prelude::*;

use earlykill_core::fixtures::*;

pub(crate) const VARIANTS: [&str; 6] = ["v0", "v1", "v2", "v3", "v4", "v5"];

/// Small windows so that timeouts, expiries, evictions and purges all happen
/// within a short random sequence.
pub(crate) fn config(hold_capacity: usize) -> MonitorConfig {
    limited(hold_capacity, 2, VARIANTS.len())
}

/// [`config`] with a per-variant hold limit and a session limit.
pub(crate) fn limited(
    hold_capacity: usize,
    hold_per_variant: usize,
    max_sessions: usize,
) -> MonitorConfig {
    MonitorConfig {
        defaults: Thresholds {
            kill_threshold: 0.5,
            min_interactions: 3,
            timeout_minutes: 4,
        },
        hold_grace_ms: 2 * MINUTE,
        hold_capacity,
        hold_per_variant,
        max_sessions,
        ended_retention_ms: 5 * MINUTE,
        ..MonitorConfig::default()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Event {
    Posted(VariantPosted<'static>),
    Interaction(earlykill_core::event::Interaction<'static>),
    Stop(StopMonitoring<'static>),
    Advance(Millis),
}

impl Event {
    fn time(&self) -> Millis {
        match self {
            Event::Posted(p) => p.posted_at,
            Event::Interaction(i) => i.occurred_at,
            Event::Stop(s) => s.requested_at,
            Event::Advance(t) => *t,
        }
    }

    fn variant(&self) -> Option<&str> {
        match self {
            Event::Posted(p) => Some(&p.variant_id),
            Event::Interaction(i) => Some(&i.variant_id),
            Event::Stop(s) => Some(&s.variant_id),
            Event::Advance(_) => None,
        }
    }
}

fn arb_time() -> impl Strategy<Value = Millis> {
    // 10-second grid over 30 minutes: ties and out-of-order events are common.
    (0i64..180).prop_map(|n| T0 + n * 10 * SECOND)
}

fn arb_event(with_advances: bool) -> impl Strategy<Value = Event> {
    let variant = proptest::sample::select(VARIANTS.to_vec());
    let post = (
        variant.clone(),
        arb_time(),
        prop_oneof![0.02f64..0.5, proptest::sample::select(vec![0.1, 0.2, 0.4])],
        proptest::option::of(prop_oneof![0.2f64..1.0, Just(0.5), Just(1.0)]),
        proptest::option::of(1i32..6),
        proptest::option::of(1i32..6),
    )
        .prop_map(|(v, at, er, thr, min, timeout)| {
            let mut p = posted(v, at, er);
            p.kill_threshold = thr;
            p.min_interactions = min;
            p.timeout_minutes = timeout;
            Event::Posted(p)
        });
    let kind = prop_oneof![
        3 => Just(InteractionKind::View),
        1 => proptest::sample::select(InteractionKind::ALL[1..].to_vec()),
    ];
    let interaction =
        (variant.clone(), kind, 0i64..30, arb_time(), 0u32..1000).prop_map(|(v, k, c, at, id)| {
            Event::Interaction(interaction(&format!("e{id}"), v, k, c, at))
        });
    let stop_event = (variant, arb_time()).prop_map(|(v, at)| Event::Stop(stop(v, at)));
    let advance = arb_time().prop_map(Event::Advance);
    let advance_weight = if with_advances { 1 } else { 0 };
    prop_oneof![
        3 => post,
        10 => interaction,
        1 => stop_event,
        advance_weight => advance,
    ]
}

pub(crate) fn arb_events(with_advances: bool) -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec(arb_event(with_advances), 0..80)
}

/// Feeds events to a monitor, then advances past every deadline.
pub(crate) fn run(monitor: &mut Monitor, events: &[Event]) -> Vec<MonitoringDecision> {
    let mut out = Vec::new();
    for event in events {
        feed(monitor, event, &mut out);
    }
    monitor.advance_to(T0 + 24 * 60 * MINUTE, &mut out);
    out
}

pub(crate) fn feed(monitor: &mut Monitor, event: &Event, out: &mut Vec<MonitoringDecision>) {
    match event {
        Event::Posted(p) => {
            monitor.apply(Input::Posted(p), out);
        }
        Event::Interaction(i) => {
            monitor.apply(Input::Interaction(i), out);
        }
        Event::Stop(s) => {
            monitor.apply(Input::Stop(s), out);
        }
        Event::Advance(t) => monitor.advance_to(*t, out),
    }
}

// ---------------------------------------------------------------- the oracle

struct OracleSession {
    variant: String,
    expected: f64,
    threshold: f64,
    min_interactions: u64,
    timeout_minutes: i64,
    posted_at: Millis,
    interactions: u64,
    views: u64,
    ended_at: Option<Millis>,
    /// Set when late events kept the ended session remembered longer.
    forget_at: Option<Millis>,
}

impl OracleSession {
    fn deadline(&self) -> Millis {
        self.posted_at + self.timeout_minutes * MINUTE
    }

    fn forget_at(&self, retention: Millis) -> Millis {
        self.forget_at.unwrap_or(self.deadline() + retention)
    }
}

struct OracleHeld {
    variant: String,
    event_id: String,
    kind: InteractionKind,
    count: i64,
    held_at: Millis,
}

/// What the oracle decides, in the terms a reader of the rule would use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decided {
    kind: DecisionKind,
    variant: String,
    posted_at: Millis,
    decided_at: Millis,
    interactions: i64,
    views: i64,
    trigger: Option<String>,
}

pub(crate) fn decided(d: &MonitoringDecision) -> Decided {
    Decided {
        kind: d.kind,
        variant: d.variant_id.clone(),
        posted_at: d.posted_at,
        decided_at: d.decided_at,
        interactions: d.interactions,
        views: d.views,
        trigger: d.trigger_event_id.clone(),
    }
}

struct Oracle {
    config: MonitorConfig,
    clock: Millis,
    sessions: Vec<OracleSession>,
    held: Vec<OracleHeld>,
    out: Vec<Decided>,
}

impl Oracle {
    fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            clock: Millis::MIN,
            sessions: vec![],
            held: vec![],
            out: vec![],
        }
    }

    fn emit(&mut self, kind: DecisionKind, i: usize, decided_at: Millis, trigger: Option<String>) {
        let s = &self.sessions[i];
        self.out.push(Decided {
            kind,
            variant: s.variant.clone(),
            posted_at: s.posted_at,
            decided_at,
            interactions: s.interactions as i64,
            views: s.views as i64,
            trigger,
        });
    }

    /// Times out every active session whose deadline has passed (earliest
    /// deadline first, ties by variant) and forgets sessions ended longer
    /// than the retention ago.
    fn settle(&mut self) {
        let mut due: Vec<usize> = (0..self.sessions.len())
            .filter(|&i| {
                self.sessions[i].ended_at.is_none() && self.sessions[i].deadline() <= self.clock
            })
            .collect();
        due.sort_by(|&a, &b| {
            let (a, b) = (&self.sessions[a], &self.sessions[b]);
            (a.deadline(), &a.variant).cmp(&(b.deadline(), &b.variant))
        });
        for i in due {
            let deadline = self.sessions[i].deadline();
            self.sessions[i].ended_at = Some(deadline);
            self.emit(DecisionKind::TimedOut, i, deadline, None);
        }
        let (clock, retention) = (self.clock, self.config.ended_retention_ms);
        self.sessions
            .retain(|s| s.ended_at.is_none() || s.forget_at(retention) > clock);
    }

    fn advance(&mut self, t: Millis) {
        if t > self.clock {
            self.clock = t;
            self.settle();
            let (clock, grace) = (self.clock, self.config.hold_grace_ms);
            self.held.retain(|h| h.held_at + grace > clock);
        }
    }

    /// An event for the ended session `i`: with less than half the
    /// retention left, it is remembered a full retention from now.
    fn late(&mut self, i: usize) {
        let (clock, retention) = (self.clock, self.config.ended_retention_ms);
        let s = &mut self.sessions[i];
        if clock >= s.deadline() && s.forget_at(retention) - clock < retention / 2 {
            s.forget_at = Some(clock + retention);
        }
    }

    fn find(&self, variant: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.variant == variant)
    }

    fn count(&mut self, i: usize, kind: InteractionKind, count: i64, event_id: &str) {
        if count == 0 {
            return;
        }
        let s = &mut self.sessions[i];
        if kind == InteractionKind::View {
            s.views += count as u64;
        } else {
            s.interactions += count as u64;
        }
        let rule_holds = s.interactions >= s.min_interactions
            && s.views > 0
            && (s.interactions as f64 / s.views as f64) < s.threshold * s.expected;
        if rule_holds {
            s.ended_at = Some(self.clock);
            self.emit(
                DecisionKind::Killed,
                i,
                self.clock,
                Some(event_id.to_owned()),
            );
        }
    }

    fn feed(&mut self, event: &Event) {
        match event {
            Event::Advance(t) => self.advance(*t),
            Event::Posted(p) => {
                self.advance(p.posted_at);
                if let Some(i) = self.find(&p.variant_id) {
                    if self.sessions[i].ended_at.is_some() {
                        self.late(i);
                    }
                    return;
                }
                let d = self.config.defaults;
                let timeout = p
                    .timeout_minutes
                    .map_or(d.timeout_minutes as i64, i64::from);
                if p.posted_at + timeout * MINUTE + self.config.ended_retention_ms <= self.clock {
                    return; // would already be forgotten: late
                }
                if self.sessions.len() >= self.config.max_sessions {
                    return; // the partition remembers as many as it may
                }
                self.sessions.push(OracleSession {
                    variant: p.variant_id.to_string(),
                    expected: p.expected_engagement_rate,
                    threshold: p.kill_threshold.unwrap_or(d.kill_threshold),
                    min_interactions: p
                        .min_interactions
                        .map_or(d.min_interactions as u64, |m| m as u64),
                    timeout_minutes: timeout,
                    posted_at: p.posted_at,
                    interactions: 0,
                    views: 0,
                    ended_at: None,
                    forget_at: None,
                });
                let i = self.sessions.len() - 1;
                self.emit(DecisionKind::Started, i, self.clock, None);
                self.settle();
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                    .into_iter()
                    .partition(|h| h.variant == *p.variant_id);
                self.held = others;
                for h in mine {
                    if self.sessions[i].ended_at.is_none() {
                        self.count(i, h.kind, h.count, &h.event_id);
                    }
                }
            }
            Event::Interaction(e) => {
                self.advance(e.occurred_at);
                match self.find(&e.variant_id) {
                    Some(i) if self.sessions[i].ended_at.is_none() => {
                        self.count(i, e.kind, e.count, &e.event_id)
                    }
                    Some(i) => self.late(i),
                    None => {
                        if self.config.hold_capacity == 0 {
                            return;
                        }
                        let mine = self.held.iter().filter(|h| h.variant == *e.variant_id);
                        if mine.count() >= self.config.hold_per_variant {
                            return; // refused: the variant holds the most it may
                        }
                        if self.held.len() >= self.config.hold_capacity {
                            self.held.remove(0);
                        }
                        self.held.push(OracleHeld {
                            variant: e.variant_id.to_string(),
                            event_id: e.event_id.to_string(),
                            kind: e.kind,
                            count: e.count,
                            held_at: self.clock,
                        });
                    }
                }
            }
            Event::Stop(s) => {
                self.advance(s.requested_at);
                match self.find(&s.variant_id) {
                    Some(i) if self.sessions[i].ended_at.is_none() => {
                        self.sessions[i].ended_at = Some(self.clock);
                        self.emit(DecisionKind::Stopped, i, self.clock, None);
                    }
                    Some(i) => self.late(i),
                    None => {}
                }
            }
        }
    }
}

fn oracle(config: MonitorConfig, events: &[Event]) -> Vec<Decided> {
    let mut oracle = Oracle::new(config);
    for event in events {
        oracle.feed(event);
    }
    oracle.advance(T0 + 24 * 60 * MINUTE);
    oracle.out
}

/// The compacted changelog, kept the way Kafka would: latest value per key,
/// tombstones delete. Records travel through the Avro codec like the real
/// changelog topic.
#[derive(Default)]
struct CompactedTopic(BTreeMap<String, Vec<u8>>);

impl CompactedTopic {
    fn write(&mut self, monitor: &mut Monitor) {
        for change in monitor.drain_changes() {
            match change.record {
                Some(record) => {
                    self.0.insert(
                        change.key,
                        codec::encode(Contract::ChangelogRecord, &record).unwrap(),
                    );
                }
                None => {
                    self.0.remove(&change.key);
                }
            }
        }
    }

    fn read(&self) -> Vec<ChangelogRecord> {
        let decoder = Decoder::new(Contract::ChangelogRecord);
        self.0
            .values()
            .map(|bytes| decoder.decode(bytes).unwrap())
            .collect()
    }
}

/// A changelog as the processor writes it, before compaction: per commit
/// the changed session records (naming their commit), then the partition
/// record (the clock, and the commit's number as its posted offset).
#[derive(Default)]
struct Log(Vec<(String, Option<Vec<u8>>, bool)>);

impl Log {
    /// Writes the monitor's changes as commit `commit`; a torn commit's
    /// partition record never lands.
    fn commit(&mut self, monitor: &mut Monitor, commit: i64, torn: bool) {
        for change in monitor.drain_changes() {
            if change.key != ChangelogRecord::PARTITION_KEY {
                let value = change
                    .record
                    .map(|r| codec::encode(Contract::ChangelogRecord, &r).unwrap());
                self.0.push((change.key, value, true));
            }
        }
        if !torn {
            let record = ChangelogRecord {
                variant_id: String::new(),
                partition_clock: (monitor.clock() != Millis::MIN).then_some(monitor.clock()),
                input_offsets: Some(InputOffsets {
                    posted: Some(commit),
                    ..InputOffsets::default()
                }),
                session: None,
                held: Vec::new(),
            };
            let value = codec::encode(Contract::ChangelogRecord, &record).unwrap();
            self.0.push((String::new(), Some(value), true));
        }
    }

    /// The log after compaction removed the superseded records that `keep`
    /// does not keep (compaction may lag anywhere): the latest record of
    /// each key always stays.
    fn compacted(&self, keep: &[bool]) -> Vec<(String, Option<Vec<u8>>, bool)> {
        let mut latest = BTreeMap::new();
        for (i, (key, _, _)) in self.0.iter().enumerate() {
            latest.insert(key.clone(), i);
        }
        self.0
            .iter()
            .enumerate()
            .filter(|(i, (key, _, _))| latest[key] == *i || keep.get(*i).copied().unwrap_or(false))
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn rebuild(records: &[(String, Option<Vec<u8>>, bool)]) -> Rebuilt {
        let decoder = Decoder::new(Contract::ChangelogRecord);
        let mut rebuild = Rebuild::new(config(3));
        for (key, value, named) in records {
            let record = value.as_ref().map(|v| decoder.decode(v).unwrap());
            rebuild.push(key, record, *named).unwrap();
        }
        rebuild.finish().unwrap()
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(400)))]

    #[test]
    fn kills_timeouts_and_stops_match_the_oracle_event_by_event(
        events in arb_events(true),
        capacity in 0usize..4,
        per_variant in 1usize..4,
        max_sessions in 3usize..8,
    ) {
        let config = limited(capacity, per_variant, max_sessions);
        let fold = run(&mut Monitor::new(config), &events);
        let fold: Vec<_> = fold.iter().map(decided).collect();
        prop_assert_eq!(fold, oracle(config, &events));
    }

    #[test]
    fn a_session_starts_once_and_ends_at_most_once(events in arb_events(true)) {
        let decisions = run(&mut Monitor::new(config(3)), &events);
        let mut by_session: BTreeMap<(String, Millis, i32), Vec<DecisionKind>> = BTreeMap::new();
        for d in &decisions {
            by_session.entry((d.variant_id.clone(), d.posted_at, d.timeout_minutes)).or_default().push(d.kind);
        }
        let ids: std::collections::BTreeSet<_> = decisions.iter().map(|d| &d.decision_id).collect();
        prop_assert_eq!(ids.len(), decisions.len(), "decision ids are unique");
        for (session, kinds) in by_session {
            prop_assert_eq!(kinds[0], DecisionKind::Started, "{:?}", session);
            prop_assert!(kinds.len() <= 2, "{:?} decided {:?}", session, kinds);
            prop_assert!(kinds[1..].iter().all(|k| *k != DecisionKind::Started));
        }
    }

    #[test]
    fn a_timeout_carries_exactly_its_deadline(events in arb_events(true)) {
        for d in run(&mut Monitor::new(config(3)), &events) {
            prop_assert_eq!(d.deadline, d.posted_at + i64::from(d.timeout_minutes) * MINUTE);
            if d.kind == DecisionKind::TimedOut {
                prop_assert_eq!(d.decided_at, d.deadline);
            } else {
                prop_assert!(d.decided_at < d.deadline || d.kind == DecisionKind::Started);
            }
        }
    }

    #[test]
    fn every_kill_satisfies_the_rule_with_the_figures_it_reports(events in arb_events(true)) {
        for d in run(&mut Monitor::new(config(3)), &events) {
            if d.kind == DecisionKind::Killed {
                prop_assert!(d.interactions >= i64::from(d.min_interactions));
                let rate = d.engagement_rate.unwrap();
                prop_assert_eq!(rate, d.interactions as f64 / d.views as f64);
                prop_assert!(rate < d.kill_threshold * d.expected_engagement_rate);
                prop_assert!(d.trigger_event_id.is_some());
            }
        }
    }

    #[test]
    fn applying_in_batches_is_applying_one_by_one(
        events in arb_events(false), capacity in 0usize..4, max_sessions in 3usize..8,
    ) {
        let config = limited(capacity, 2, max_sessions);
        let inputs: Vec<Input> = events
            .iter()
            .filter_map(|event| match event {
                Event::Posted(p) => Some(Input::Posted(p)),
                Event::Interaction(i) => Some(Input::Interaction(i)),
                Event::Stop(s) => Some(Input::Stop(s)),
                Event::Advance(_) => None,
            })
            .collect();
        let mut one_by_one = Monitor::new(config);
        let mut expected = Vec::new();
        // Each input's outcome, and how many decisions there are once it
        // is applied (which says which decisions it made).
        let expected_outcomes: Vec<_> = inputs
            .iter()
            .map(|input| {
                let outcome = one_by_one.apply(*input, &mut expected);
                (outcome, expected.len())
            })
            .collect();
        let mut batched = Monitor::new(config);
        let mut decisions = Vec::new();
        let mut outcomes = Vec::new();
        batched.apply_batch(&inputs, &mut decisions, |i, outcome, made| {
            outcomes.push((i, (outcome, made)))
        });
        let indexed: Vec<_> = expected_outcomes.into_iter().enumerate().collect();
        prop_assert_eq!(outcomes, indexed);
        prop_assert_eq!(decisions, expected);
        prop_assert_eq!(batched.snapshot(), one_by_one.snapshot());
        prop_assert_eq!(batched.stats(), one_by_one.stats());
    }

    #[test]
    fn the_same_input_gives_identical_decisions(events in arb_events(true)) {
        let first = run(&mut Monitor::new(config(3)), &events);
        let second = run(&mut Monitor::new(config(3)), &events);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn restoring_from_the_changelog_at_any_point_continues_identically(
        events in arb_events(true), split in any::<proptest::sample::Index>(),
    ) {
        let uninterrupted = run(&mut Monitor::new(config(3)), &events);

        let at = split.index(events.len() + 1);
        let mut before_crash = Monitor::new(config(3));
        let mut topic = CompactedTopic::default();
        let mut decisions = Vec::new();
        for event in &events[..at] {
            feed(&mut before_crash, event, &mut decisions);
            topic.write(&mut before_crash);
        }
        let restored_records = topic.read();
        let snapshot = before_crash.snapshot();
        prop_assert_eq!(&restored_records, &snapshot, "the compacted changelog is the snapshot");

        let mut restored = Monitor::restore(config(3), restored_records).unwrap();
        prop_assert_eq!(restored.snapshot(), snapshot);
        decisions.extend(run(&mut restored, &events[at..]));
        prop_assert_eq!(decisions, uninterrupted);
    }

    #[test]
    fn a_changelog_rebuilds_the_last_commit_however_far_compaction_went(
        events in arb_events(true),
        cuts in proptest::collection::vec(any::<bool>(), 80),
        keep in proptest::collection::vec(any::<bool>(), 400),
    ) {
        let mut monitor = Monitor::new(config(3));
        let mut log = Log::default();
        let mut decisions = Vec::new();
        let mut commits = 0;
        for (i, event) in events.iter().enumerate() {
            feed(&mut monitor, event, &mut decisions);
            if cuts[i] {
                commits += 1;
                log.commit(&mut monitor, commits, false);
            }
        }
        commits += 1;
        log.commit(&mut monitor, commits, false);
        let rebuilt = Log::rebuild(&log.compacted(&keep));
        prop_assert_eq!(rebuilt.torn, 0);
        prop_assert_eq!(rebuilt.offsets.posted, Some(commits));
        prop_assert_eq!(rebuilt.monitor.snapshot(), monitor.snapshot());
    }

    #[test]
    fn a_torn_commit_is_undone_and_rewritten_by_the_next(
        events in arb_events(true),
        split in any::<proptest::sample::Index>(),
        keep in proptest::collection::vec(any::<bool>(), 400),
    ) {
        // Commit 1 up to the split; commit 2, with everything after it,
        // tears: its session records land, its partition record does not.
        let at = split.index(events.len() + 1);
        let mut monitor = Monitor::new(config(3));
        let mut log = Log::default();
        let mut decisions = Vec::new();
        for event in &events[..at] {
            feed(&mut monitor, event, &mut decisions);
        }
        log.commit(&mut monitor, 1, false);
        let committed = monitor.snapshot();
        for event in &events[at..] {
            feed(&mut monitor, event, &mut decisions);
        }
        log.commit(&mut monitor, 2, true);
        let mut rebuilt = Log::rebuild(&log.0);
        prop_assert_eq!(rebuilt.offsets.posted, Some(1));
        prop_assert_eq!(rebuilt.monitor.snapshot(), committed.clone());
        // The restored processor's first commit rewrites the torn keys:
        // from then on the torn records count for nothing, compacted or not.
        log.commit(&mut rebuilt.monitor, 3, false);
        let again = Log::rebuild(&log.compacted(&keep));
        prop_assert_eq!(again.torn, 0);
        prop_assert_eq!(again.offsets.posted, Some(3));
        prop_assert_eq!(again.monitor.snapshot(), committed);
    }

    #[test]
    fn a_variants_decisions_do_not_depend_on_other_variants_events(
        mut events in arb_events(false), ranks in proptest::collection::vec(any::<u8>(), VARIANTS.len()),
    ) {
        // Interleavings that respect event time: sorted by time, ties broken
        // one way, then another way that reorders variants among themselves.
        let rank = |e: &Event| ranks[VARIANTS.iter().position(|v| Some(*v) == e.variant()).unwrap()];
        events.sort_by_key(Event::time);
        let mut reordered = events.clone();
        reordered.sort_by_key(|e| (e.time(), rank(e)));

        let per_variant = |decisions: Vec<MonitoringDecision>| {
            let mut map: BTreeMap<String, Vec<MonitoringDecision>> = BTreeMap::new();
            for d in decisions {
                map.entry(d.variant_id.clone()).or_default().push(d);
            }
            map
        };
        let together = per_variant(run(&mut Monitor::new(config(1000)), &events));
        prop_assert_eq!(&together, &per_variant(run(&mut Monitor::new(config(1000)), &reordered)));

        for variant in VARIANTS {
            let alone: Vec<Event> = events.iter().filter(|e| e.variant() == Some(variant)).cloned().collect();
            let decisions = run(&mut Monitor::new(config(1000)), &alone);
            prop_assert_eq!(together.get(variant).cloned().unwrap_or_default(), decisions, "{}", variant);
        }
    }
}
