//! Shadow policies under exactly-once, on librdkafka's mock cluster: the
//! shadow decisions are written in the live decisions' transactions, so a
//! `read_committed` reader sees each policy's decisions once, equal to the
//! pure fold with its thresholds, and a hold-out share's kills split
//! exactly between the live topic and policy `holdout`. (The real-broker
//! test, at-least-once with a `kill -9`, is `tests/services/shadow.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use crate::common::backlog::{backlog, backlog_start, fold, send_all, sort};
use crate::common::kafka::{decisions_with_policy, Kafka, Running};
use earlykill::processor::Guarantee;
use earlykill_core::event::{DecisionKind, MonitoringDecision};
use earlykill_core::monitor::{Holdout, MonitorConfig};
use earlykill_core::shadow::{shadow_configs, ShadowPolicy, HOLDOUT};

fn kills<'a>(decisions: impl IntoIterator<Item = &'a MonitoringDecision>) -> BTreeSet<String> {
    decisions
        .into_iter()
        .filter(|d| d.kind == DecisionKind::Killed)
        .map(|d| d.variant_id.clone())
        .collect()
}

#[test]
fn exactly_once_shadow_decisions_equal_their_folds_and_split_the_kills() {
    let kafka = Kafka::new(2);
    let mut config = kafka.processor_config("shadow-eos");
    assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
    kafka
        .cluster
        .create_topic(&config.shadow_decisions_topic, 1, 1)
        .expect("the shadow decisions topic");
    config.shadow_policies = vec!["strict:kill-threshold=0.9".parse::<ShadowPolicy>().unwrap()];
    config.monitor.holdout = Holdout::Spare {
        parts_per_million: Holdout::parts_per_million(0.3),
    };
    // 60 posts 40 s apart from an hour ago: every window ends before now.
    let events = backlog(backlog_start(), 60, 3);
    send_all(&kafka, &events);

    let mut expected: BTreeMap<String, Vec<MonitoringDecision>> = BTreeMap::new();
    for (name, shadow) in shadow_configs(&config.monitor, &config.shadow_policies) {
        let mut decisions = fold(&events, shadow);
        for d in &mut decisions {
            d.decision_id = format!("{}~{name}", d.decision_id);
        }
        expected.insert(name.to_string(), sort(decisions));
    }
    let expected_live = sort(fold(&events, config.monitor));
    let total: usize = expected.values().map(Vec::len).sum();

    let running = Running::start(config.clone());
    let bootstrap = kafka.cluster.bootstrap_servers();
    // Every decision, the idle clock's timeouts included, then a clean stop.
    let live = decisions_with_policy(&bootstrap, &config.topics.decisions, expected_live.len());
    let shadow = decisions_with_policy(&bootstrap, &config.shadow_decisions_topic, total);
    running.stop().expect("clean stop");

    let live: Vec<MonitoringDecision> = sort(live.into_iter().map(|(_, d)| d).collect());
    assert_eq!(live, expected_live, "the live decisions, once each");
    let mut by_policy: BTreeMap<String, Vec<MonitoringDecision>> = BTreeMap::new();
    for (policy, d) in shadow {
        by_policy.entry(policy).or_default().push(d);
    }
    for (policy, want) in &expected {
        let got = sort(by_policy.remove(policy).unwrap_or_default());
        assert_eq!(
            got.len(),
            want.len(),
            "policy {policy}: once each under exactly-once"
        );
        assert!(
            got == *want,
            "policy {policy}: its decisions differ from its fold"
        );
    }
    assert!(
        by_policy.is_empty(),
        "unknown policies: {:?}",
        by_policy.keys()
    );

    let without = fold(
        &events,
        MonitorConfig {
            holdout: Holdout::None,
            ..config.monitor
        },
    );
    let (live_kills, holdout_kills) = (kills(&live), kills(&expected[HOLDOUT]));
    assert!(live_kills.is_disjoint(&holdout_kills));
    assert_eq!(&live_kills | &holdout_kills, kills(&without));
    assert!(!holdout_kills.is_empty(), "the share holds out some kills");
}
