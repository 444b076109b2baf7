//! Shadow policies and a hold-out share through `earlykill run` on a real
//! broker (tansu over TCP): on a backlog, each shadow policy publishes
//! exactly what the pure fold with its thresholds decides, the live
//! decisions are the fold's with the share spared, and the kills of a fold
//! without a share are split exactly between the live policy and
//! `holdout`; all of it across a `kill -9` and restart.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::backlog::{backlog, fold, produce, sort};
use crate::common::kafka::{decisions_with_policy, PATIENCE};
use crate::common::tansu::Tansu;
use earlykill::processor::ProcessorConfig;
use earlykill_core::event::{DecisionKind, MonitoringDecision};
use earlykill_core::monitor::{Holdout, MonitorConfig};
use earlykill_core::shadow::{shadow_configs, ShadowPolicy, HOLDOUT};

const PARTITIONS: i32 = 6;
const VARIANTS: u32 = 600;
const POLICIES: [&str; 2] = [
    "lenient:kill-threshold=0.2",
    "strict:kill-threshold=0.9,min-interactions=30",
];
const SHARE: f64 = 0.2;

/// One of each id (at-least-once may publish one twice, identically).
fn once(all: impl IntoIterator<Item = MonitoringDecision>) -> Vec<MonitoringDecision> {
    let mut by_id: BTreeMap<String, MonitoringDecision> = BTreeMap::new();
    for d in all {
        if let Some(first) = by_id.get(&d.decision_id) {
            assert_eq!(first, &d, "one id, two different decisions");
        }
        by_id.insert(d.decision_id.clone(), d);
    }
    by_id.into_values().collect()
}

fn kills(decisions: &[MonitoringDecision]) -> BTreeSet<(String, i64)> {
    decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Killed)
        .map(|d| (d.variant_id.clone(), d.posted_at))
        .collect()
}

#[test]
fn shadow_policies_and_a_holdout_share_publish_what_their_folds_decide() {
    let config = ProcessorConfig::with_bootstrap("unused");
    let tansu = Tansu::start();
    tansu.create_earlykill_topics(&config.topics, PARTITIONS);
    tansu.create_topics(&[(&config.shadow_decisions_topic, 1, false)]);
    // Wholly in the past (posts are 40 s apart), so that the idle clock
    // ends every session, as the folds do.
    let start = chrono::Utc::now().timestamp_millis() - i64::from(VARIANTS) * 40_000 - 30 * 60_000;
    let events = backlog(start, VARIANTS, 10);
    produce(&tansu.bootstrap, &config.topics, &events);

    let ppm = Holdout::parts_per_million(SHARE);
    let live = MonitorConfig {
        holdout: Holdout::Spare {
            parts_per_million: ppm,
        },
        ..config.monitor
    };
    let policies: Vec<ShadowPolicy> = POLICIES.iter().map(|p| p.parse().unwrap()).collect();
    let expected_live = fold(&events, live);
    let mut expected_shadow: BTreeMap<String, Vec<MonitoringDecision>> = BTreeMap::new();
    for (name, shadow) in shadow_configs(&live, &policies) {
        let mut decisions = fold(&events, shadow);
        for d in &mut decisions {
            d.decision_id = format!("{}~{name}", d.decision_id);
        }
        expected_shadow.insert(name.to_string(), sort(decisions));
    }
    assert_eq!(
        expected_shadow.keys().collect::<Vec<_>>(),
        ["holdout", "lenient", "strict"]
    );
    // The backlog tells the policies apart.
    let kill_counts: Vec<usize> = expected_shadow.values().map(|d| kills(d).len()).collect();
    assert!(
        kill_counts.iter().collect::<BTreeSet<_>>().len() == 3,
        "{kill_counts:?}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_earlykill"));
    command
        .args(["run", "--bootstrap-servers", &tansu.bootstrap])
        .args(["--guarantee", "at-least-once", "--instance-id", "shadow-0"])
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--max-future-skew-seconds", "0"])
        .args(["--log-level", "warn", "--threads", "2"])
        .args(["--holdout-share", &SHARE.to_string()])
        .args(["-X", "session.timeout.ms=6000"])
        .args(["--shadow-policy", POLICIES[0]])
        .args(["--shadow-policy", POLICIES[1]])
        .stdin(Stdio::null());
    // `kill -9` once half the live decisions are out: the shadow state is
    // restored from the changelog with the live state (a shadow that lost
    // its sessions would miss their ends, or count from zero).
    let mut first = command.spawn().expect("start earlykill run");
    decisions_with_policy(
        &tansu.bootstrap,
        &config.topics.decisions,
        expected_live.len() / 2,
    );
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let mut child = command.spawn().expect("start earlykill run again");
    let live = once(
        decisions_with_policy(
            &tansu.bootstrap,
            &config.topics.decisions,
            expected_live.len(),
        )
        .into_iter()
        .map(|(policy, d)| {
            assert_eq!(policy, "", "a live decision has no policy header");
            d
        }),
    );
    let shadow_total: usize = expected_shadow.values().map(Vec::len).sum();
    let shadow = decisions_with_policy(
        &tansu.bootstrap,
        &config.shadow_decisions_topic,
        shadow_total,
    );

    // The status of the latest held-out variant the rule would have
    // killed: timed out live, held out, and killed under `holdout`.
    let spared = expected_shadow[HOLDOUT]
        .iter()
        .filter(|d| d.kind == DecisionKind::Killed)
        .max_by_key(|d| d.posted_at)
        .expect("a held-out kill")
        .variant_id
        .clone();
    let answer = status_when(&url, &spared, |a| {
        a["shadow"].as_array().is_some_and(|s| s.len() == 3) && a["status"] != "active"
    });
    // Per-policy counters: every configured policy's series, from the start
    // (how many the restarted process counts depends on where the kill
    // fell).
    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .expect("/metrics")
        .into_string()
        .expect("text");
    for policy in ["lenient", "strict", HOLDOUT] {
        let series =
            format!("earlykill_shadow_decisions_total{{policy=\"{policy}\",kind=\"started\"}}");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer["held_out"], true, "{answer}");
    assert_eq!(answer["status"], "timed_out", "{answer}");
    let verdict = |policy: &str| {
        answer["shadow"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["policy"] == policy)
            .unwrap_or_else(|| panic!("no {policy} verdict in {answer}"))
            .clone()
    };
    assert_eq!(verdict(HOLDOUT)["status"], "killed", "{answer}");
    assert_eq!(verdict("strict")["kill_threshold"], 0.9, "{answer}");

    assert_eq!(live, sort(expected_live.clone()), "the live decisions");
    let mut by_policy: BTreeMap<String, Vec<MonitoringDecision>> = BTreeMap::new();
    for (policy, d) in shadow {
        assert!(
            d.decision_id.ends_with(&format!("~{policy}")),
            "{}",
            d.decision_id
        );
        by_policy.entry(policy).or_default().push(d);
    }
    for (policy, expected) in &expected_shadow {
        let got = once(by_policy.remove(policy).unwrap_or_default());
        assert_eq!(got.len(), expected.len(), "policy {policy}");
        assert!(
            got == *expected,
            "policy {policy}: decisions differ from its fold"
        );
    }
    assert!(
        by_policy.is_empty(),
        "unknown policies: {:?}",
        by_policy.keys()
    );

    // Every kill of a fold without a share is made once, live or holdout.
    let without = fold(&events, config.monitor);
    let (live_kills, holdout_kills) = (kills(&live), kills(&expected_shadow[HOLDOUT]));
    assert!(live_kills.is_disjoint(&holdout_kills));
    assert_eq!(&live_kills | &holdout_kills, kills(&without));
    assert!(!holdout_kills.is_empty() && !live_kills.is_empty());
}

/// The status answer for `variant` once `ready` holds for it (the API
/// shows what is committed, a moment after the decisions are out).
fn status_when(url: &str, variant: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = ureq::get(&format!("{url}/performance-monitor/status/{variant}"))
            .timeout(Duration::from_secs(5))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .and_then(|body| serde_json::from_str::<Value>(&body).ok());
        match answer {
            Some(answer) if ready(&answer) => return answer,
            other => assert!(
                Instant::now() < deadline,
                "status of {variant} never ready: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shadow_policies_are_read_from_the_environment_separated_by_semicolons() {
    use clap::Parser;
    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        settings: earlykill::config::processor::Settings,
    }
    // Each test runs in a process of its own (nextest): the variable is
    // this test's.
    std::env::set_var("EARLYKILL_SHADOW_POLICIES", POLICIES.join(";"));
    let run = Run::try_parse_from(["run"]).expect("parses");
    std::env::remove_var("EARLYKILL_SHADOW_POLICIES");
    let config = run.settings.resolve().expect("resolves");
    let names: Vec<&str> = config
        .shadow_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["lenient", "strict"]);
}
