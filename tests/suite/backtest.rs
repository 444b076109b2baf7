//! `earlykill backtest`: the figures of a hand-made history against values
//! worked out by hand; the set equal to the live configuration reproducing
//! the processor's terminal decisions on the mock cluster; the flags
//! through the binary.

use std::process::{Command, Stdio};

use crate::common::backlog::{backlog, backlog_start, send_all};
use crate::common::kafka::{Kafka, Running};
use crate::common::*;
use earlykill::backtest::read::{self, merge, ReadOptions};
use earlykill::backtest::{fold, grid, run, Event, Options, ParamSet, SetReport};
use earlykill_core::event::{
    Contract, DecisionKind, Decoder, InteractionKind, Millis, MonitoringDecision,
};
use earlykill_core::monitor::{holdout, Holdout, MonitorConfig};

fn views(id: &str, n: i64, at: Millis) -> Event {
    Event::Interaction(interaction(
        &format!("{id}-views-{at}"),
        id,
        InteractionKind::View,
        n,
        at,
    ))
}

fn likes(id: &str, n: i64, at: Millis) -> Event {
    Event::Interaction(interaction(
        &format!("{id}-likes-{at}"),
        id,
        InteractionKind::Like,
        n,
        at,
    ))
}

/// Four variants posted at T0 expecting a 50% rate, min 10 interactions,
/// 10-minute windows:
/// - `poor`: 10 likes in 200 views at +20 s (5%), 200 more views at +5 min;
/// - `recovers`: 15 likes in 100 views at +20 s (15%), 50 likes at +3 min;
/// - `good`: 60 likes in 100 views;
/// - `late-poor`: 20 likes in 100 views at +20 s (20%), 300 views at +4 min.
fn hand_made() -> (Vec<Event>, Vec<Event>) {
    let s = SECOND;
    let posts = ["poor", "recovers", "good", "late-poor"]
        .map(|v| Event::Posted(posted(v, T0, 0.5)))
        .to_vec();
    let mut interactions = vec![
        views("poor", 200, T0 + 10 * s),
        views("recovers", 100, T0 + 10 * s),
        views("good", 100, T0 + 10 * s),
        views("late-poor", 100, T0 + 10 * s),
        likes("poor", 10, T0 + 20 * s),
        likes("recovers", 15, T0 + 20 * s),
        likes("good", 60, T0 + 20 * s),
        likes("late-poor", 20, T0 + 20 * s),
        likes("recovers", 50, T0 + 3 * MINUTE),
        views("late-poor", 300, T0 + 4 * MINUTE),
        views("poor", 200, T0 + 5 * MINUTE),
    ];
    interactions.sort_by_key(Event::time);
    (posts, interactions)
}

fn options(sets: Vec<ParamSet>, close_at: Option<Millis>) -> Options {
    Options {
        sets,
        base: MonitorConfig::default(),
        close_at,
        truth_threshold: 0.5,
    }
}

fn set(kill_threshold: f64) -> ParamSet {
    ParamSet {
        kill_threshold,
        min_interactions: 10,
        timeout_minutes: 10,
    }
}

#[test]
fn a_hand_made_history_scores_as_worked_out_by_hand() {
    let (posts, interactions) = hand_made();
    let history = merge(0, [posts, interactions, Vec::new()]);
    let reports = run(
        std::slice::from_ref(&history),
        &options(vec![set(0.5), set(0.2)], None),
    );
    // Poor at the end (below 0.5 x 50%): poor (10/400) and late-poor
    // (20/400); recovers ends at 65/100 and good at 60/100.
    // 0.5 kills poor, recovers and late-poor at +20 s; views saved: 200
    // (poor) + 0 (recovers) + 300 (late-poor).
    let strict = &reports[0];
    assert_eq!(
        (
            strict.sessions,
            strict.killed,
            strict.timed_out,
            strict.open
        ),
        (4, 3, 0, 1)
    );
    assert_eq!((strict.poor, strict.killed_poor), (2, 2));
    assert_eq!(strict.precision, Some(2.0 / 3.0));
    assert_eq!(strict.recall, Some(1.0));
    assert_eq!(
        (strict.kill_p50_s, strict.kill_p90_s),
        (Some(20.0), Some(20.0))
    );
    assert_eq!(strict.views_saved, 500);
    assert!((strict.score - 0.8).abs() < 1e-12, "F1 of 2/3 and 1");
    // 0.2 kills poor at +20 s and late-poor at +4 min (20/400 = 5%).
    let lenient = &reports[1];
    assert_eq!((lenient.killed, lenient.open), (2, 2));
    assert_eq!((lenient.precision, lenient.recall), (Some(1.0), Some(1.0)));
    assert_eq!(
        (lenient.kill_p50_s, lenient.kill_p90_s),
        (Some(20.0), Some(240.0))
    );
    assert_eq!(lenient.views_saved, 200);

    // Closing at +11 min times out the sessions still open.
    let closed = run(
        std::slice::from_ref(&history),
        &options(vec![set(0.2)], Some(T0 + 11 * MINUTE)),
    );
    assert_eq!((closed[0].timed_out, closed[0].open), (2, 0));

    // Scored on a hold-out share only: the same figures for the variants
    // in the share, nothing of the others.
    let ppm = Holdout::parts_per_million(0.5);
    let mut held_out = options(vec![set(0.5)], None);
    held_out.base.holdout = Holdout::Only {
        parts_per_million: ppm,
    };
    let shared = run(std::slice::from_ref(&history), &held_out);
    let in_share = |v: &str| holdout::in_share(v, ppm);
    let count = |vs: &[&str]| vs.iter().filter(|v| in_share(v)).count() as u64;
    let all = ["poor", "recovers", "good", "late-poor"];
    assert!((1..4).contains(&count(&all)), "the share splits the four");
    assert_eq!(shared[0].sessions, count(&all));
    assert_eq!(shared[0].killed, count(&["poor", "recovers", "late-poor"]));
    assert_eq!(shared[0].poor, count(&["poor", "late-poor"]));

    // Ranked best first: the lenient set's F1 is 1.
    let ranked = earlykill::backtest::ranked(reports.clone());
    assert_eq!(ranked[0].kill_threshold, 0.2);
    assert_eq!(grid(&[0.3, 0.4], &[5, 10], &[5, 10]).len(), 8);
}

/// The processor's decisions, read_committed from the decisions topic.
fn published(kafka: &Kafka) -> Vec<MonitoringDecision> {
    let decoder = Decoder::new(Contract::MonitoringDecision);
    kafka
        .read_until(&kafka.config.topics.decisions, |_| true)
        .iter()
        .map(|r| {
            decoder
                .decode_reference(r.value.as_deref().unwrap())
                .unwrap()
        })
        .collect()
}

fn terminal(mut decisions: Vec<MonitoringDecision>) -> Vec<MonitoringDecision> {
    decisions.retain(|d| d.kind != DecisionKind::Started);
    decisions.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
    decisions
}

#[test]
fn the_live_configuration_reproduces_the_processors_terminal_decisions() {
    let kafka = Kafka::new(2);
    let events = backlog(backlog_start(), 60, 3);
    send_all(&kafka, &events);
    let config = kafka.processor_config("backtest-live");
    let running = Running::start(config.clone());
    running.wait_committed(&kafka.input_ends());
    running.stop().expect("clean stop");
    let live = terminal(published(&kafka));
    let kinds: Vec<_> = live.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DecisionKind::Killed), "{kinds:?}");

    let (histories, summary) =
        read::read(&config, &ReadOptions::default(), |_, _| {}).expect("read");
    assert_eq!(summary.records as usize, events.len());
    let rule = config.monitor.defaults;
    let options = Options {
        sets: vec![ParamSet {
            kill_threshold: rule.kill_threshold,
            min_interactions: rule.min_interactions,
            timeout_minutes: rule.timeout_minutes,
        }],
        base: config.monitor,
        close_at: None,
        truth_threshold: rule.kill_threshold,
    };
    let mut decisions = Vec::new();
    for history in &histories {
        fold(history, options.sets[0], &options, &mut decisions);
    }
    assert_eq!(terminal(decisions), live);
}

fn backtest(kafka: &Kafka, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_earlykill"))
        .arg("backtest")
        .args(["--bootstrap-servers", &kafka.cluster.bootstrap_servers()])
        .args(args)
        .env("EARLYKILL_MAX_FUTURE_SKEW_SECONDS", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run earlykill backtest")
}

fn reports(kafka: &Kafka, args: &[&str]) -> Vec<SetReport> {
    let dir = std::env::temp_dir().join(format!("earlykill-backtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.json", args.join("_").replace(['/', ':'], "-")));
    let mut all: Vec<&str> = args.to_vec();
    let path = file.to_str().unwrap().to_owned();
    all.extend(["--output", &path]);
    let output = backtest(kafka, &all);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("the JSON report");
    let json: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
    for key in [
        "kill_threshold",
        "min_interactions",
        "timeout_minutes",
        "sessions",
        "killed",
        "timed_out",
        "stopped",
        "open",
        "precision",
        "recall",
    ] {
        assert!(json[0].get(key).is_some(), "{key} in {text}");
    }
    json.into_iter()
        .map(|v| SetReport {
            kill_threshold: v["kill_threshold"].as_f64().unwrap(),
            min_interactions: v["min_interactions"].as_u64().unwrap() as u32,
            timeout_minutes: v["timeout_minutes"].as_u64().unwrap() as u32,
            sessions: v["sessions"].as_u64().unwrap(),
            killed: v["killed"].as_u64().unwrap(),
            timed_out: v["timed_out"].as_u64().unwrap(),
            stopped: v["stopped"].as_u64().unwrap(),
            open: v["open"].as_u64().unwrap(),
            kill_p50_s: v["kill_p50_s"].as_f64(),
            kill_p90_s: v["kill_p90_s"].as_f64(),
            poor: v["poor"].as_u64().unwrap(),
            killed_poor: v["killed_poor"].as_u64().unwrap(),
            precision: v["precision"].as_f64(),
            recall: v["recall"].as_f64(),
            views_saved: v["views_saved"].as_i64().unwrap(),
            score: v["score"].as_f64().unwrap(),
        })
        .collect()
}

#[test]
fn the_flags_through_the_binary() {
    let kafka = Kafka::new(1);
    let (posts, interactions) = hand_made();
    for event in &posts {
        if let Event::Posted(p) = event {
            kafka.post(p);
        }
    }
    // A fifth post with its own threshold of 0.9: 40 likes in 100 views
    // (40% < 0.9 x 50%) is killed under its own threshold only.
    let mut own = posted("own", T0, 0.5);
    own.kill_threshold = Some(0.9);
    kafka.post(&own);
    kafka.interact(&interaction(
        "own-v",
        "own",
        InteractionKind::View,
        100,
        T0 + 10 * SECOND,
    ));
    kafka.interact(&interaction(
        "own-l",
        "own",
        InteractionKind::Like,
        40,
        T0 + 20 * SECOND,
    ));
    for event in &interactions {
        if let Event::Interaction(i) = event {
            kafka.interact(i);
        }
    }
    kafka.flush();

    let base = reports(
        &kafka,
        &["--kill-threshold", "0.5,0.2", "--min-interactions", "10"],
    );
    assert_eq!(base.len(), 2);
    let lenient = base.iter().find(|r| r.kill_threshold == 0.2).unwrap();
    assert_eq!(
        (lenient.sessions, lenient.killed),
        (5, 3),
        "poor, late-poor and own"
    );
    let ignored = reports(&kafka, &["--kill-threshold", "0.2", "--ignore-overrides"]);
    assert_eq!(ignored[0].killed, 2, "own keeps its 40% under 0.2");

    // --close-at times out what is still open at the end of the input.
    let closed = reports(
        &kafka,
        &[
            "--kill-threshold",
            "0.2",
            "--close-at",
            "2026-11-23T00:11:00Z",
        ],
    );
    assert_eq!((closed[0].timed_out, closed[0].open), (2, 0));
    // --to before the later events: late-poor is never seen at 5%, and
    // poor's later views are not in its final rate.
    let early = reports(
        &kafka,
        &["--kill-threshold", "0.2", "--to", "2026-11-23T00:01:00Z"],
    );
    assert_eq!(early[0].killed, 2, "poor and own only");
    let late = reports(
        &kafka,
        &["--kill-threshold", "0.2", "--from", "2026-11-23T00:00:15Z"],
    );
    assert_eq!(late[0].sessions, 0, "every post is before --from");

    // --holdout-share scores the share's variants only, and says so.
    let in_share = |v: &str| holdout::in_share(v, Holdout::parts_per_million(0.5));
    let share: u64 = ["poor", "recovers", "good", "late-poor", "own"]
        .iter()
        .filter(|v| in_share(v))
        .count() as u64;
    let held = reports(
        &kafka,
        &["--kill-threshold", "0.2", "--holdout-share", "0.5"],
    );
    assert_eq!(held[0].sessions, share);
    let table = backtest(&kafka, &["--holdout-share", "0.5"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Scored: the held-out sessions only") && !text.contains("cut short"),
        "{text}"
    );

    // A bad list is refused naming the flag; the table is printed.
    let bad = backtest(&kafka, &["--kill-threshold", "0.5,abc"]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("--kill-threshold"), "{message}");
    let table = backtest(&kafka, &["--kill-threshold", "0.3"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("precision") && text.contains("cut short"),
        "{text}"
    );
}
