//! `cargo bench --bench real_broker -- peer` (issue 35, item 4): the same
//! backlog on the same broker processed by earlykill and by a peer users
//! would pick instead, Quix Streams from PyPI with its default settings and
//! the rule written in its idiom (`benches/peer/quix_rule.py`). Each side's
//! throughput (records from its first to its last) and CPU time (the whole
//! process, from `/proc`), and each side's kills and stops (with their
//! counts) checked against the pure fold of the backlog.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use std::borrow::Cow;

use earlykill_core::event::{
    DecisionKind, Interaction, Millis, MonitoringDecision, StopMonitoring,
};
use earlykill_core::monitor::MonitorConfig;

use super::common::backlog::{backlog, backlog_start, fold, produce, Event};
use super::common::tansu::Tansu;
use super::common::{kafka, pip};
use super::{create, median, topics, wait_decisions, Processor, PARTITIONS, RUNS};

/// A kill or a stop as both sides report it: kind, variant, interactions,
/// views.
type Ended = (&'static str, String, i64, i64);

/// The CPU time the process `pid` has used so far (user and system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which ends at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf reads a constant of the system.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn ends_of(decisions: &[MonitoringDecision]) -> BTreeSet<Ended> {
    decisions
        .iter()
        .filter_map(|d| {
            let kind = match d.kind {
                DecisionKind::Killed => "killed",
                DecisionKind::Stopped => "stopped",
                _ => return None,
            };
            Some((kind, d.variant_id.clone(), d.interactions, d.views))
        })
        .collect()
}

/// An operator's stop for one variant in 16, between the fifth and the
/// sixth like (before the rule would kill it at the tenth), on the
/// commands topic: the case where the order of two topics decides the
/// counts.
fn with_stops(mut events: Vec<(Millis, usize, Event)>) -> Vec<(Millis, usize, Event)> {
    let mut likes: std::collections::HashMap<String, Vec<Millis>> = Default::default();
    for (_, _, event) in &events {
        if let Event::Interaction(Interaction {
            variant_id,
            occurred_at,
            event_id,
            ..
        }) = event
        {
            if event_id.contains("-like-") {
                likes
                    .entry(variant_id.to_string())
                    .or_default()
                    .push(*occurred_at);
            }
        }
    }
    let mut stops: Vec<_> = likes
        .into_iter()
        .filter(|(id, _)| {
            id.trim_start_matches("v-")
                .parse::<u32>()
                .is_ok_and(|i| i % 16 == 5)
        })
        .map(|(id, mut times)| {
            times.sort();
            let at = times[4] + (times[5] - times[4]) / 2;
            let stop = StopMonitoring {
                variant_id: Cow::Owned(id),
                reason: Cow::Borrowed("bench"),
                requested_by: Cow::Borrowed("bench"),
                requested_at: at,
            };
            (at, 2, Event::Stop(stop))
        })
        .collect();
    events.append(&mut stops);
    events.sort_by_key(|(t, rank, _)| (*t, *rank));
    events
}

/// One side's run: records per second, CPU seconds, kills wrong or
/// missing (against the fold), timeouts seen.
struct Side {
    rate: f64,
    cpu: f64,
    wrong: usize,
    timeouts: usize,
}

pub(super) fn peer() {
    const VARIANTS: u32 = 3_000;
    let tansu = Tansu::start();
    let base = topics("peer");
    create(&tansu, &base, false);
    // Quix Streams derives its state changelog's settings from the input
    // topics' `retention.ms`, which tansu reports only when it was set.
    let kept: &[(&str, &str)] = &[("retention.ms", "604800000")];
    tansu.create_configured_topics(&[
        (base.posted.as_str(), PARTITIONS, kept),
        (base.interactions.as_str(), PARTITIONS, kept),
        (base.commands.as_str(), PARTITIONS, kept),
    ]);
    let events = with_stops(backlog(backlog_start(), VARIANTS, 320));
    produce(&tansu.bootstrap, &base, &events);
    let truth = fold(&events, MonitorConfig::default());
    let ends = ends_of(&truth);
    let stops = ends.iter().filter(|e| e.0 == "stopped").count();
    let timeouts = truth
        .iter()
        .filter(|d| d.kind == DecisionKind::TimedOut)
        .count();
    let site = pip::install("quixstreams", &["quixstreams==3.28.1", "fastavro==1.13.1"]);
    let state = std::env::temp_dir().join(format!("earlykill-bench-peer-{}", std::process::id()));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // earlykill, its defaults (at-least-once as Quix Streams', threads
        // one per core).
        let name = format!("peer-e{run}");
        let own = topics(&name);
        create(&tansu, &own, false);
        let processor = Processor::start(&tansu.bootstrap, &own, &name, &[]);
        let (assigned, _) = processor.wait_for("partitions assigned");
        let last = wait_decisions(&tansu.bootstrap, &own.decisions, 2 * VARIANTS as usize);
        let cpu = cpu_seconds(processor.child.id());
        processor.kill();
        let decided = kafka::decisions(&tansu.bootstrap, &own.decisions, 2 * VARIANTS as usize);
        let side = Side {
            rate: events.len() as f64 / (last - assigned).as_secs_f64(),
            cpu,
            wrong: ends.symmetric_difference(&ends_of(&decided)).count(),
            timeouts: decided
                .iter()
                .filter(|d| d.kind == DecisionKind::TimedOut)
                .count(),
        };
        eprintln!(
            "peer run {run}: earlykill {:.0} records/s, {:.2} CPU s, {} kills and stops wrong or missing, {} of {timeouts} timeouts",
            side.rate, side.cpu, side.wrong, side.timeouts
        );
        ours.push(side);

        // Quix Streams.
        let decisions = format!("quix-decisions.{run}");
        tansu.create_topics(&[(decisions.as_str(), 1, false)]);
        let mut quix = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/benches/peer/quix_rule.py"
            ))
            .args(["--bootstrap", &tansu.bootstrap])
            .args(["--group", &format!("peer-q{run}")])
            .args([
                "--posted",
                &base.posted,
                "--interactions",
                &base.interactions,
                "--commands",
                &base.commands,
            ])
            .args(["--decisions", &decisions])
            .arg("--state-dir")
            .arg(state.join(format!("q{run}")))
            .args(["--schemas", concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")])
            .args(["--records", &events.len().to_string()])
            .env("PYTHONPATH", &site)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the Quix Streams peer");
        let mut lines = BufReader::new(quix.stdout.take().expect("stdout")).lines();
        let mut wait_for = |word: &str| loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with(word) => return Instant::now(),
                Some(Ok(_)) => {}
                other => panic!("the Quix Streams peer stopped before `{word}`: {other:?}"),
            }
        };
        let first = wait_for("first");
        let done = wait_for("done");
        let cpu = cpu_seconds(quix.id());
        // A graceful stop: it flushes its producer and commits.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(quix.id() as i32, libc::SIGTERM) };
        let stopped = quix.wait().expect("the peer stops");
        assert!(stopped.success() || stopped.code().is_none(), "{stopped}");
        let decided: Vec<serde_json::Value> =
            kafka::read_until(&tansu.bootstrap, &decisions, |_| true)
                .iter()
                .map(|r| serde_json::from_slice(r.value.as_deref().expect("value")).expect("JSON"))
                .collect();
        let kind = |d: &serde_json::Value, k: &str| d["kind"] == k;
        let their_ends: BTreeSet<Ended> = decided
            .iter()
            .filter_map(|d| {
                let kind = ["killed", "stopped"].into_iter().find(|k| kind(d, k))?;
                let n = |f: &str| d[f].as_i64().expect("a count");
                let id = d["variant_id"].as_str().expect("id").to_owned();
                Some((kind, id, n("interactions"), n("views")))
            })
            .collect();
        // What the peer got wrong, for the record: a few of each.
        let missed: Vec<_> = ends.difference(&their_ends).take(3).collect();
        let made: Vec<_> = their_ends.difference(&ends).take(3).collect();
        if !missed.is_empty() || !made.is_empty() {
            eprintln!("peer run {run}: Quix Streams missed {missed:?}; made instead {made:?}");
        }
        let side = Side {
            rate: events.len() as f64 / (done - first).as_secs_f64(),
            cpu,
            wrong: ends.symmetric_difference(&their_ends).count(),
            timeouts: decided.iter().filter(|d| kind(d, "timed_out")).count(),
        };
        eprintln!(
            "peer run {run}: Quix Streams {:.0} records/s, {:.2} CPU s, {} kills and stops wrong or missing, {} of {timeouts} timeouts",
            side.rate, side.cpu, side.wrong, side.timeouts
        );
        theirs.push(side);
    }
    let _ = std::fs::remove_dir_all(&state);
    let figures = |sides: &[Side]| {
        (
            median(sides.iter().map(|s| s.rate).collect()),
            median(sides.iter().map(|s| s.cpu).collect()),
        )
    };
    let ((rate, cpu), (their_rate, their_cpu)) = (figures(&ours), figures(&theirs));
    println!(
        "peer: {} records ({VARIANTS} variants; the fold: {} kills, {stops} stops, {timeouts} timeouts); \
         earlykill {rate:.0} records/s with {cpu:.2} CPU s, kills and stops wrong or missing per run {:?}; \
         Quix Streams 3.28.1 {their_rate:.0} records/s with {their_cpu:.2} CPU s, kills and stops wrong or missing per run {:?}, \
         timeouts per run {:?}; earlykill {:.1}x the throughput with {:.1}x less CPU (medians of {RUNS})",
        events.len(),
        ends.len() - stops,
        ours.iter().map(|s| s.wrong).collect::<Vec<_>>(),
        theirs.iter().map(|s| s.wrong).collect::<Vec<_>>(),
        theirs.iter().map(|s| s.timeouts).collect::<Vec<_>>(),
        rate / their_rate,
        their_cpu / cpu,
    );
}
