//! The rule and the time semantics, one behaviour per test.

use earlykill_core::event::{DecisionKind, InteractionKind::*, SessionStatus};
use earlykill_core::monitor::rule::Thresholds;
use earlykill_core::monitor::{decision_id, Input, Monitor, MonitorConfig, Outcome};

use earlykill_core::fixtures::*;

fn monitor() -> Monitor {
    Monitor::new(MonitorConfig::default())
}

/// Posts `v` at T0 expecting a 10% rate (kill limit 5% with defaults).
fn posted_monitor(v: &str) -> Monitor {
    let mut m = monitor();
    let (outcome, decisions) = apply(&mut m, Input::Posted(&posted(v, T0, 0.1)));
    assert_eq!(outcome, Outcome::Started);
    assert_eq!(decisions.len(), 1);
    m
}

fn kinds(decisions: &[earlykill_core::event::MonitoringDecision]) -> Vec<DecisionKind> {
    decisions.iter().map(|d| d.kind).collect()
}

#[test]
fn a_post_starts_a_session_with_a_started_decision() {
    let mut m = monitor();
    let mut event = posted("v", T0, 0.1);
    event.metadata.insert("arm".into(), "B".into());
    let (_, decisions) = apply(&mut m, Input::Posted(&event));
    let started = &decisions[0];
    assert_eq!(started.kind, DecisionKind::Started);
    assert_eq!(started.deadline, T0 + 10 * MINUTE);
    assert_eq!(
        (started.persona_id.as_str(), started.post_id.as_str()),
        ("persona-of-v", "post-of-v")
    );
    assert_eq!(started.metadata.get("arm").map(String::as_str), Some("B"));
    assert_eq!(m.active_sessions(), 1);
}

#[test]
fn kill_fires_on_the_event_that_crosses_the_threshold() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 400, T0 + SECOND)),
    );
    for n in 1..=9 {
        let (outcome, decisions) = apply(
            &mut m,
            Input::Interaction(&interaction(
                &format!("like-{n}"),
                "v",
                Like,
                1,
                T0 + 2 * SECOND,
            )),
        );
        assert_eq!(
            (outcome, decisions.len()),
            (Outcome::Counted, 0),
            "like {n}: below min_interactions"
        );
    }
    let (outcome, decisions) = apply(
        &mut m,
        Input::Interaction(&interaction("like-10", "v", Like, 1, T0 + 3 * SECOND)),
    );
    assert_eq!(outcome, Outcome::Killed);
    let kill = &decisions[0];
    assert_eq!(kill.kind, DecisionKind::Killed);
    assert_eq!((kill.interactions, kill.views), (10, 400));
    assert_eq!(kill.engagement_rate, Some(0.025));
    assert_eq!(kill.trigger_event_id.as_deref(), Some("like-10"));
    assert_eq!(kill.decided_at, T0 + 3 * SECOND);
    assert!(
        kill.reason.contains("10 interactions / 400 views"),
        "{}",
        kill.reason
    );
    assert_eq!(m.active_sessions(), 0);
}

#[test]
fn a_view_can_be_the_event_that_kills() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0 + SECOND)),
    );
    let (outcome, _) = apply(
        &mut m,
        Input::Interaction(&interaction("v1", "v", View, 100, T0 + SECOND)),
    );
    assert_eq!(
        outcome,
        Outcome::Counted,
        "10/100 = 10% is above the 5% limit"
    );
    let (outcome, decisions) = apply(
        &mut m,
        Input::Interaction(&interaction("v2", "v", View, 150, T0 + SECOND)),
    );
    assert_eq!(outcome, Outcome::Killed, "10/250 = 4% is below it");
    assert_eq!(decisions[0].trigger_event_id.as_deref(), Some("v2"));
}

#[test]
fn zero_views_never_kills() {
    let mut m = posted_monitor("v");
    let (outcome, decisions) = apply(
        &mut m,
        Input::Interaction(&interaction("e", "v", Reply, 1000, T0 + SECOND)),
    );
    assert_eq!((outcome, decisions.len()), (Outcome::Counted, 0));
    assert_eq!(m.session("v").unwrap().engagement_rate, None);
}

#[test]
fn a_rate_exactly_at_the_limit_is_not_a_kill() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 200, T0 + SECOND)),
    );
    let (outcome, _) = apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0 + SECOND)),
    );
    assert_eq!(
        outcome,
        Outcome::Counted,
        "10/200 = 5% is not below 0.5 x 10%"
    );
}

#[test]
fn a_count_of_zero_changes_nothing_and_checks_nothing() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0)),
    );
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 0, T0)),
    );
    assert_eq!(m.session("v").unwrap().state.views, 0);
}

#[test]
fn timeout_fires_when_the_clock_reaches_posted_at_plus_timeout() {
    let mut m = posted_monitor("v");
    assert!(advance(&mut m, T0 + 10 * MINUTE - 1).is_empty());
    let decisions = advance(&mut m, T0 + 10 * MINUTE);
    assert_eq!(kinds(&decisions), [DecisionKind::TimedOut]);
    assert_eq!(decisions[0].decided_at, T0 + 10 * MINUTE);
    assert!(
        decisions[0].reason.contains("no views"),
        "{}",
        decisions[0].reason
    );
}

#[test]
fn an_event_past_the_deadline_fires_the_timeout_before_it_is_applied() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 1000, T0 + SECOND)),
    );
    let (outcome, decisions) = apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0 + 10 * MINUTE)),
    );
    assert_eq!(
        outcome,
        Outcome::Late,
        "stamped at the deadline: the window is [posted_at, deadline)"
    );
    assert_eq!(kinds(&decisions), [DecisionKind::TimedOut]);
    assert_eq!(decisions[0].interactions, 0);
}

#[test]
fn per_variant_overrides_set_threshold_min_interactions_and_timeout() {
    let mut m = monitor();
    let mut event = posted("v", T0, 0.1);
    event.kill_threshold = Some(0.9);
    event.min_interactions = Some(2);
    event.timeout_minutes = Some(3);
    let (_, started) = apply(&mut m, Input::Posted(&event));
    assert_eq!(
        (
            started[0].kill_threshold,
            started[0].min_interactions,
            started[0].timeout_minutes
        ),
        (0.9, 2, 3)
    );
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 25, T0)),
    );
    // 2/25 = 8% is above the default limit (5%) but below 0.9 x 10% = 9%.
    let (outcome, _) = apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 2, T0)),
    );
    assert_eq!(outcome, Outcome::Killed);

    let mut m = monitor();
    apply(&mut m, Input::Posted(&event));
    assert_eq!(
        kinds(&advance(&mut m, T0 + 3 * MINUTE)),
        [DecisionKind::TimedOut]
    );
}

#[test]
fn configured_defaults_apply_to_variants_without_overrides() {
    let config = MonitorConfig {
        defaults: Thresholds {
            kill_threshold: 0.2,
            min_interactions: 1,
            timeout_minutes: 1,
        },
        ..MonitorConfig::default()
    };
    let mut m = Monitor::new(config);
    let (_, started) = apply(&mut m, Input::Posted(&posted("v", T0, 0.5)));
    assert_eq!(started[0].deadline, T0 + MINUTE);
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 11, T0)),
    );
    let (outcome, _) = apply(
        &mut m,
        Input::Interaction(&interaction("like", "v", Like, 1, T0)),
    );
    assert_eq!(outcome, Outcome::Killed, "1/11 < 0.2 x 0.5");
}

#[test]
fn stop_ends_an_active_session_with_who_and_why() {
    let mut m = posted_monitor("v");
    let (outcome, decisions) = apply(&mut m, Input::Stop(&stop("v", T0 + MINUTE)));
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(decisions[0].kind, DecisionKind::Stopped);
    assert_eq!(
        decisions[0].requested_by.as_deref(),
        Some("ops@example.com")
    );
    assert!(decisions[0].reason.contains("campaign paused"));
    assert!(
        advance(&mut m, T0 + 20 * MINUTE).is_empty(),
        "a stopped session does not time out"
    );
}

#[test]
fn a_stop_for_an_unknown_variant_is_ignored() {
    let mut m = monitor();
    let (outcome, decisions) = apply(&mut m, Input::Stop(&stop("nobody", T0)));
    assert_eq!((outcome, decisions.len()), (Outcome::UnknownVariant, 0));
}

#[test]
fn a_repeated_post_for_an_active_session_is_a_no_op() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 3, T0)),
    );
    let mut again = posted("v", T0 + SECOND, 0.9);
    again.timeout_minutes = Some(1);
    let (outcome, decisions) = apply(&mut m, Input::Posted(&again));
    assert_eq!((outcome, decisions.len()), (Outcome::DuplicatePost, 0));
    let session = m.session("v").unwrap();
    assert_eq!(
        (
            session.state.interactions,
            session.state.posted_at,
            session.deadline
        ),
        (3, T0, T0 + 10 * MINUTE)
    );
}

#[test]
fn events_for_an_ended_session_are_late_and_change_nothing() {
    let mut m = posted_monitor("v");
    apply(&mut m, Input::Stop(&stop("v", T0)));
    let before = m.session("v").unwrap();
    for input in [
        Input::Interaction(&interaction("e", "v", View, 1000, T0 + SECOND)),
        Input::Stop(&stop("v", T0 + SECOND)),
        Input::Posted(&posted("v", T0 + SECOND, 0.1)),
    ] {
        let (outcome, decisions) = apply(&mut m, input);
        assert_eq!((outcome, decisions.len()), (Outcome::Late, 0));
    }
    assert_eq!(m.session("v").unwrap(), before);
    assert_eq!(m.stats().late, 3);
}

#[test]
fn a_session_ends_exactly_once() {
    let mut m = posted_monitor("v");
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 1000, T0)),
    );
    let (_, killed) = apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0)),
    );
    assert_eq!(kinds(&killed), [DecisionKind::Killed]);
    assert!(
        advance(&mut m, T0 + 30 * MINUTE).is_empty(),
        "no timeout after a kill"
    );
    assert_eq!(m.session("v").unwrap().state.status, SessionStatus::Killed);
}

#[test]
fn interactions_before_their_post_are_held_and_applied_when_it_arrives() {
    let mut m = monitor();
    let (outcome, _) = apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 1000, T0)),
    );
    assert_eq!(outcome, Outcome::Held);
    apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0)),
    );
    assert_eq!(m.held_interactions(), 2);
    let (_, decisions) = apply(&mut m, Input::Posted(&posted("v", T0, 0.1)));
    assert_eq!(
        kinds(&decisions),
        [DecisionKind::Started, DecisionKind::Killed]
    );
    assert_eq!(decisions[1].trigger_event_id.as_deref(), Some("likes"));
    assert_eq!(m.held_interactions(), 0);
}

#[test]
fn held_interactions_are_dropped_and_counted_after_the_grace_period() {
    let mut m = monitor();
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 1000, T0)),
    );
    advance(&mut m, T0 + 5 * MINUTE - 1);
    assert_eq!(m.held_interactions(), 1);
    advance(&mut m, T0 + 5 * MINUTE);
    assert_eq!((m.held_interactions(), m.stats().held_expired), (0, 1));
    apply(&mut m, Input::Posted(&posted("v", T0 + 5 * MINUTE, 0.1)));
    assert_eq!(m.session("v").unwrap().state.views, 0);
}

#[test]
fn the_held_buffer_is_bounded_and_drops_the_oldest() {
    let mut m = Monitor::new(MonitorConfig {
        hold_capacity: 2,
        ..MonitorConfig::default()
    });
    for (n, v) in ["a", "b", "c"].iter().enumerate() {
        apply(
            &mut m,
            Input::Interaction(&interaction(&format!("e{n}"), v, View, 1, T0)),
        );
    }
    assert_eq!((m.held_interactions(), m.stats().held_evicted), (2, 1));
    apply(&mut m, Input::Posted(&posted("a", T0, 0.1)));
    assert_eq!(
        m.session("a").unwrap().state.views,
        0,
        "a's interaction was the oldest"
    );
    apply(&mut m, Input::Posted(&posted("c", T0, 0.1)));
    assert_eq!(m.session("c").unwrap().state.views, 1);
}

#[test]
fn timeouts_fire_in_deadline_order_then_by_variant_id() {
    let mut m = monitor();
    apply(&mut m, Input::Posted(&posted("b", T0, 0.1)));
    apply(&mut m, Input::Posted(&posted("a", T0, 0.1)));
    apply(&mut m, Input::Posted(&posted("c", T0 - MINUTE, 0.1)));
    let decisions = advance(&mut m, T0 + 60 * MINUTE);
    let order: Vec<_> = decisions
        .iter()
        .map(|d| (d.variant_id.as_str(), d.decided_at))
        .collect();
    assert_eq!(
        order,
        [
            ("c", T0 + 9 * MINUTE),
            ("a", T0 + 10 * MINUTE),
            ("b", T0 + 10 * MINUTE)
        ]
    );
}

#[test]
fn a_post_that_arrives_after_its_deadline_starts_and_times_out_at_once() {
    let mut m = monitor();
    advance(&mut m, T0 + 60 * MINUTE);
    let (_, decisions) = apply(&mut m, Input::Posted(&posted("v", T0, 0.1)));
    assert_eq!(
        kinds(&decisions),
        [DecisionKind::Started, DecisionKind::TimedOut]
    );
    assert_eq!(decisions[1].decided_at, T0 + 10 * MINUTE);
}

#[test]
fn a_post_whose_session_would_already_be_forgotten_is_late() {
    let mut m = monitor();
    advance(&mut m, T0 + 70 * MINUTE);
    let (outcome, decisions) = apply(&mut m, Input::Posted(&posted("v", T0, 0.1)));
    assert_eq!((outcome, decisions.len()), (Outcome::Late, 0));
}

#[test]
fn held_interactions_cannot_kill_a_session_posted_after_its_deadline() {
    let mut m = monitor();
    apply(
        &mut m,
        Input::Interaction(&interaction("views", "v", View, 1000, T0 + 11 * MINUTE)),
    );
    apply(
        &mut m,
        Input::Interaction(&interaction("likes", "v", Like, 10, T0 + 11 * MINUTE)),
    );
    let (_, decisions) = apply(&mut m, Input::Posted(&posted("v", T0, 0.1)));
    assert_eq!(
        kinds(&decisions),
        [DecisionKind::Started, DecisionKind::TimedOut]
    );
    assert_eq!(m.stats().late, 2);
}

#[test]
fn next_due_is_the_earliest_deadline_then_the_purge_time() {
    let mut m = monitor();
    assert_eq!(m.next_due(), None);
    apply(&mut m, Input::Posted(&posted("late", T0 + MINUTE, 0.1)));
    apply(&mut m, Input::Posted(&posted("early", T0, 0.1)));
    assert_eq!(m.next_due(), Some(T0 + 10 * MINUTE));
    let due = m.next_due().unwrap();
    let decisions = advance(&mut m, due);
    assert_eq!(decisions[0].variant_id, "early");
    assert_eq!(m.next_due(), Some(T0 + 11 * MINUTE));
    advance(&mut m, T0 + 11 * MINUTE);
    assert_eq!(
        m.next_due(),
        Some(T0 + 70 * MINUTE),
        "then early is forgotten"
    );
}

#[test]
fn the_clock_never_goes_back() {
    let mut m = posted_monitor("v");
    advance(&mut m, T0 + 5 * MINUTE);
    apply(
        &mut m,
        Input::Interaction(&interaction("old", "v", View, 1, T0)),
    );
    assert_eq!(m.clock(), T0 + 5 * MINUTE);
    assert_eq!(
        m.session("v").unwrap().state.views,
        1,
        "an old event for an active session still counts"
    );
}

#[test]
fn sessions_are_forgotten_retention_after_their_deadline_and_the_variant_can_start_again() {
    let mut m = posted_monitor("v");
    apply(&mut m, Input::Stop(&stop("v", T0 + MINUTE)));
    advance(&mut m, T0 + 10 * MINUTE);
    advance(&mut m, T0 + 70 * MINUTE - 1);
    assert!(m.session("v").is_some());
    advance(&mut m, T0 + 70 * MINUTE);
    assert!(m.session("v").is_none());
    let (outcome, _) = apply(&mut m, Input::Posted(&posted("v", T0 + 71 * MINUTE, 0.1)));
    assert_eq!(outcome, Outcome::Started);
}

#[test]
fn decision_ids_are_deterministic_and_distinct_per_kind() {
    let run = || {
        let mut m = posted_monitor("v");
        let mut all = advance(&mut m, T0 + 10 * MINUTE);
        all.extend(apply(&mut m, Input::Posted(&posted("w", T0 + 10 * MINUTE, 0.1))).1);
        all.into_iter().map(|d| d.decision_id).collect::<Vec<_>>()
    };
    let ids = run();
    assert_eq!(ids, run());
    assert_eq!(ids[0], format!("v@{T0}+10m/timed_out"));
    assert_eq!(ids[0], decision_id("v", T0, 10, DecisionKind::TimedOut));
    assert_ne!(decision_id("v", T0, 10, DecisionKind::Started), ids[0]);
}

#[test]
fn input_the_fold_cannot_apply_is_rejected_without_effect() {
    let mut m = posted_monitor("v");
    let long = "x".repeat(300);
    for input in [
        Input::Interaction(&interaction("e", "", View, 1, T0)),
        Input::Interaction(&interaction("e", "v", View, -5, T0 + MINUTE)),
        Input::Posted(&posted(&long, T0, 0.1)),
    ] {
        assert_eq!(apply(&mut m, input).0, Outcome::Rejected);
    }
    assert_eq!(m.session("v").unwrap().state.views, 0);
    assert_eq!(m.clock(), T0, "a rejected event does not move the clock");
}

#[test]
fn the_drained_changelog_compacts_to_the_snapshot() {
    let mut m = posted_monitor("a");
    let mut compacted = std::collections::BTreeMap::new();
    let mut drain = |m: &mut Monitor| {
        for change in m.drain_changes() {
            match change.record {
                Some(record) => compacted.insert(change.key, record),
                None => compacted.remove(&change.key),
            };
        }
    };
    drain(&mut m);
    apply(
        &mut m,
        Input::Interaction(&interaction("e1", "b", View, 1, T0)),
    );
    apply(
        &mut m,
        Input::Interaction(&interaction("e2", "a", Like, 1, T0 + SECOND)),
    );
    drain(&mut m);
    advance(&mut m, T0 + 80 * MINUTE);
    drain(&mut m);
    let snapshot: std::collections::BTreeMap<_, _> = m
        .snapshot()
        .into_iter()
        .map(|r| (r.variant_id.clone(), r))
        .collect();
    assert_eq!(compacted, snapshot);
    assert_eq!(
        snapshot.len(),
        1,
        "only the partition record: a was purged, b's hold expired"
    );
}

#[test]
fn views_that_keep_coming_after_a_session_ended_are_late_and_never_held() {
    let mut m = posted_monitor("v");
    apply(&mut m, Input::Stop(&stop("v", T0 + MINUTE)));
    // The real post keeps getting a view a minute for three hours: the
    // session stays remembered (each view finds it, so none is held).
    for minute in 2..180 {
        let event = interaction(
            &format!("view-{minute}"),
            "v",
            View,
            1,
            T0 + minute * MINUTE,
        );
        let (outcome, _) = apply(&mut m, Input::Interaction(&event));
        assert_eq!(outcome, Outcome::Late, "minute {minute}");
    }
    assert_eq!(m.held_interactions(), 0);
    assert_eq!(m.stats().late, 178);
    let kept = m.session("v").expect("still remembered");
    assert!(kept.state.forget_at.is_some_and(|t| t > T0 + 179 * MINUTE));
    // Once the views stop it is forgotten a retention after the last one
    // that moved its forget time.
    advance(&mut m, T0 + 179 * MINUTE + 60 * MINUTE);
    assert!(m.session("v").is_none());
}

#[test]
fn one_variant_holds_at_most_hold_per_variant_and_its_record_stays_small() {
    let mut m = Monitor::new(MonitorConfig {
        hold_per_variant: 1_000,
        ..MonitorConfig::default()
    });
    let id = "e".repeat(256);
    for n in 0..30_000 {
        let event = interaction(&format!("{n:05}{}", &id[5..]), "flood", View, 1, T0);
        let (outcome, _) = apply(&mut m, Input::Interaction(&event));
        let expected = if n < 1_000 {
            Outcome::Held
        } else {
            Outcome::HoldRefused
        };
        assert_eq!(outcome, expected, "interaction {n}");
    }
    assert_eq!(m.held_interactions(), 1_000);
    assert_eq!(m.stats().held_refused, 29_000);
    let record = m
        .drain_changes()
        .into_iter()
        .find(|c| c.key == "flood")
        .and_then(|c| c.record)
        .expect("the variant's record");
    let bytes = earlykill_core::event::codec::encode(
        earlykill_core::event::Contract::ChangelogRecord,
        &record,
    )
    .expect("encodes");
    assert!(
        bytes.len() <= (8 << 10) + 1_000 * earlykill_core::monitor::MAX_HELD_BYTES,
        "{} bytes",
        bytes.len()
    );
    // The held ones still apply, oldest first, when the post arrives.
    let (_, decisions) = apply(&mut m, Input::Posted(&posted("flood", T0, 0.1)));
    assert_eq!(m.session("flood").unwrap().state.views, 1_000);
    assert_eq!(decisions.len(), 1);
}

#[test]
fn a_post_beyond_max_sessions_starts_nothing() {
    let mut m = Monitor::new(MonitorConfig {
        max_sessions: 2,
        ..MonitorConfig::default()
    });
    for v in ["a", "b"] {
        assert_eq!(
            apply(&mut m, Input::Posted(&posted(v, T0, 0.1))).0,
            Outcome::Started
        );
    }
    let (outcome, decisions) = apply(&mut m, Input::Posted(&posted("c", T0, 0.1)));
    assert_eq!(outcome, Outcome::SessionLimit);
    assert!(decisions.is_empty());
    assert!(m.session("c").is_none());
    assert_eq!(m.stats().session_limit, 1);
    // Ended sessions count until they are forgotten; then room is made.
    advance(&mut m, T0 + 70 * MINUTE);
    let (outcome, _) = apply(&mut m, Input::Posted(&posted("c", T0 + 70 * MINUTE, 0.1)));
    assert_eq!(outcome, Outcome::Started);
}
