//! Shadow policies and the hold-out share against plain folds (proptest):
//! a shadow policy decides exactly what a live fold with its thresholds
//! decides, the live decisions do not change with shadows beside them, and
//! a hold-out share splits the kills of a fold without one between the
//! live policy and the `holdout` policy.

use std::sync::Arc;

use earlykill_core::event::{DecisionKind, MonitoringDecision};
use earlykill_core::monitor::rule::Thresholds;
use earlykill_core::monitor::{Holdout, Input, Monitor, MonitorConfig};
use earlykill_core::shadow::{shadow_configs, ShadowDecision, ShadowPolicy, Shadows, HOLDOUT};
use proptest::prelude::*;

use crate::monitor_properties::{arb_events, config, decided, feed, run, Decided, Event};

const END: i64 = 24 * 60 * 60_000;

/// Feeds `events` to the live monitor one by one and to the shadows in
/// runs (every event between two clock advances at once), then advances
/// both past every deadline.
fn run_with_shadows(
    live: &mut Monitor,
    shadows: &mut Shadows,
    events: &[Event],
) -> (Vec<MonitoringDecision>, Vec<ShadowDecision>) {
    let (mut out, mut shadow_out) = (Vec::new(), Vec::new());
    for run in events.split_inclusive(|e| matches!(e, Event::Advance(_))) {
        for event in run {
            feed(live, event, &mut out);
        }
        let inputs: Vec<Input<'_, '_>> = run
            .iter()
            .filter_map(|e| match e {
                Event::Posted(p) => Some(Input::Posted(p)),
                Event::Interaction(i) => Some(Input::Interaction(i)),
                Event::Stop(s) => Some(Input::Stop(s)),
                Event::Advance(_) => None,
            })
            .collect();
        shadows.apply_batch(&inputs, &mut shadow_out);
        if let Some(Event::Advance(t)) = run.last() {
            shadows.advance_to(*t, &mut shadow_out);
        }
    }
    let end = earlykill_core::fixtures::T0 + END;
    live.advance_to(end, &mut out);
    shadows.advance_to(end, &mut shadow_out);
    (out, shadow_out)
}

fn of_policy(decisions: &[ShadowDecision], policy: &str) -> Vec<Decided> {
    decisions
        .iter()
        .filter(|d| &*d.policy == policy)
        .map(|d| {
            assert!(
                d.decision.decision_id.ends_with(&format!("~{policy}")),
                "{}",
                d.decision.decision_id
            );
            decided(&d.decision)
        })
        .collect()
}

fn arb_policy(name: &'static str) -> impl Strategy<Value = ShadowPolicy> {
    (
        proptest::option::of(prop_oneof![Just(0.2), Just(0.8), 0.1f64..1.0]),
        proptest::option::of(1u32..6),
        proptest::option::of(1u32..8),
    )
        .prop_map(
            move |(kill_threshold, min_interactions, timeout_minutes)| ShadowPolicy {
                name: name.to_owned(),
                kill_threshold,
                min_interactions,
                timeout_minutes,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn shadow_policies_never_change_live_decisions_and_each_equals_a_live_fold_with_its_thresholds(
        events in arb_events(true),
        a in arb_policy("a"),
        b in arb_policy("b"),
    ) {
        let live_config = config(4);
        let alone = run(&mut Monitor::new(live_config), &events);
        let policies = [a, b];
        let mut live = Monitor::new(live_config);
        let mut shadows = Shadows::new(shadow_configs(&live_config, &policies));
        let (with, shadow) = run_with_shadows(&mut live, &mut shadows, &events);
        prop_assert_eq!(&with, &alone);
        for policy in &policies {
            let own = MonitorConfig {
                defaults: policy.thresholds(live_config.defaults),
                ..live_config
            };
            let expected: Vec<Decided> =
                run(&mut Monitor::new(own), &events).iter().map(decided).collect();
            prop_assert_eq!(of_policy(&shadow, &policy.name), expected, "policy {}", policy);
        }
    }

    #[test]
    fn a_holdout_share_splits_the_kills_between_the_live_policy_and_holdout(
        events in arb_events(true),
        parts_per_million in 0u32..=1_000_000,
    ) {
        // Limits that never bind: the share's own fold counts only its
        // variants against the partition's hold capacity and session limit.
        let without = config(1_000);
        let with_share = MonitorConfig {
            holdout: Holdout::Spare { parts_per_million },
            ..without
        };
        let reference = run(&mut Monitor::new(without), &events);
        let mut live = Monitor::new(with_share);
        let mut shadows = Shadows::new(shadow_configs(&with_share, &[]));
        prop_assert_eq!(
            shadows.names().map(|n| n.to_string()).collect::<Vec<_>>(),
            if parts_per_million > 0 { vec![HOLDOUT.to_owned()] } else { vec![] }
        );
        let (live_out, shadow) = run_with_shadows(&mut live, &mut shadows, &events);
        let held = |v: &str| Holdout::Spare { parts_per_million }.spares(v);
        // Variants outside the share: the live decisions are the
        // reference's, and the holdout policy says nothing of them.
        let outside = |ds: &[MonitoringDecision]| -> Vec<Decided> {
            ds.iter().filter(|d| !held(&d.variant_id)).map(decided).collect()
        };
        prop_assert_eq!(outside(&live_out), outside(&reference));
        // Inside: the live policy never kills; the holdout policy decides
        // exactly what the reference decided.
        prop_assert!(live_out
            .iter()
            .all(|d| !(held(&d.variant_id) && d.kind == DecisionKind::Killed)));
        let inside: Vec<Decided> =
            reference.iter().filter(|d| held(&d.variant_id)).map(decided).collect();
        prop_assert_eq!(of_policy(&shadow, HOLDOUT), inside);
        // So every kill of the reference is made once: live or holdout.
        let kills = |ds: &mut dyn Iterator<Item = &MonitoringDecision>| {
            let mut k: Vec<Decided> = ds.filter(|d| d.kind == DecisionKind::Killed).map(decided).collect();
            k.sort_by_key(|d| format!("{d:?}"));
            k
        };
        let split = kills(&mut live_out.iter().chain(shadow.iter().map(|d| &d.decision)));
        prop_assert_eq!(split, kills(&mut reference.iter()));
    }
}

#[test]
fn a_shadow_policy_keeps_its_own_thresholds_and_the_posts_win() {
    use earlykill_core::fixtures::*;
    let live_config = MonitorConfig::default();
    let strict: ShadowPolicy = "strict:kill-threshold=0.9,min-interactions=2"
        .parse()
        .unwrap();
    let mut shadows = Shadows::new(shadow_configs(&live_config, &[strict]));
    let mut own = posted("own", T0, 0.5);
    own.kill_threshold = Some(0.1);
    let default = posted("default", T0, 0.5);
    let mut out = Vec::new();
    shadows.apply_batch(&[Input::Posted(&own), Input::Posted(&default)], &mut out);
    for v in ["own", "default"] {
        let views = interaction(
            &format!("{v}-views"),
            v,
            earlykill_core::event::InteractionKind::View,
            10,
            T0 + 1,
        );
        let like = interaction(
            &format!("{v}-like"),
            v,
            earlykill_core::event::InteractionKind::Like,
            2,
            T0 + 2,
        );
        shadows.apply_batch(
            &[Input::Interaction(&views), Input::Interaction(&like)],
            &mut out,
        );
    }
    // 2 of 10 = 0.2 against 0.5 expected: below 0.9 of it, above 0.1 of it.
    let killed: Vec<&str> = out
        .iter()
        .filter(|d| d.decision.kind == DecisionKind::Killed)
        .map(|d| d.decision.variant_id.as_str())
        .collect();
    assert_eq!(killed, ["default"]);
    assert_eq!(out[0].policy, Arc::from("strict"));
    assert_eq!(
        Thresholds::default().kill_threshold,
        0.5,
        "the live default this test's arithmetic assumes"
    );
}
