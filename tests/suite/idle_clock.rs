//! The idle clock, replayed: under at-least-once a crash after an idle
//! timeout was published, followed by input that would have decided
//! otherwise had it arrived before, never gives a session two different
//! terminal decisions.

use crate::common::kafka::{Kafka, Running};
use crate::common::{interaction, posted, MINUTE, SECOND};
use earlykill::processor::Guarantee;
use earlykill::processor::ProcessorError;
use earlykill_core::event::{DecisionKind, InteractionKind, Millis};

#[test]
fn a_restart_after_an_idle_timeout_makes_the_same_timeout_whatever_arrived_since() {
    let kafka = Kafka::new(1);
    let mut config = kafka.processor_config("idle");
    config.guarantee = Guarantee::AtLeastOnce;
    // A one-minute session whose deadline is three seconds away: only the
    // idle clock can time it out. Nine likes on 100 views: one short of a
    // kill.
    let now = chrono::Utc::now().timestamp_millis();
    let mut post = posted("v", now - MINUTE + 3 * SECOND, 0.5);
    post.timeout_minutes = Some(1);
    let deadline = post.posted_at + MINUTE;
    kafka.post(&post);
    let at = |offset: Millis| post.posted_at + offset;
    kafka.interact(&interaction(
        "views",
        "v",
        InteractionKind::View,
        100,
        at(SECOND),
    ));
    for n in 0..9 {
        kafka.interact(&interaction(
            &format!("like-{n}"),
            "v",
            InteractionKind::Like,
            1,
            at(SECOND),
        ));
    }
    kafka.flush();
    // The first run crashes right after publishing its second decision, the
    // idle timeout: nothing after it is committed.
    let mut first = config.clone();
    first.crash_after_decisions = Some(2);
    let mut crashed = Running::start(first);
    assert!(
        matches!(crashed.join(), Err(ProcessorError::InjectedCrash { .. })),
        "the first run crashes after its second decision"
    );
    let published = kafka.decisions(2);
    assert_eq!(published[1].kind, DecisionKind::TimedOut, "{published:#?}");
    // A tenth like, stamped before the deadline, arrives only now: folded
    // before the timeout it would have killed the session.
    kafka.interact(&interaction(
        "like-9",
        "v",
        InteractionKind::Like,
        1,
        at(2 * SECOND),
    ));
    let ends = kafka.input_ends();
    let second = Running::start(config);
    second.wait_for_partitions(1);
    second.wait_committed(&ends);
    second.stop().expect("clean stop");
    let decisions = kafka.decisions(2);
    let terminal: Vec<_> = decisions
        .iter()
        .filter(|d| d.kind != DecisionKind::Started)
        .collect();
    assert!(
        terminal.iter().all(|d| *d == terminal[0]),
        "two different terminal decisions: {terminal:#?}"
    );
    assert_eq!(terminal[0].kind, DecisionKind::TimedOut);
    assert_eq!(terminal[0].decided_at, deadline);
    assert_eq!(terminal[0].interactions, 9);
}
