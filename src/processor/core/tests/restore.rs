//! Restores against the in-memory broker: the order partitions are read
//! in, a compacted changelog, and partitions handed between workers
//! without a restore.

use std::collections::BTreeSet;

use super::*;

/// Revokes both partitions after a kill on partition 0, returns where a
/// fresh restore of the same broker would start them.
fn revoke_after_a_kill(h: &mut Harness) -> Vec<Start> {
    h.post(0, "v-1");
    h.engage_poorly(0, "v-1");
    h.core.revoked(&h.fake, &[0, 1].into());
    h.fake.calls();
    // Where another core restoring from this broker's changelog starts.
    let mut other = Core::new(
        h.config.clone(),
        Framing::SingleObject,
        2,
        StatusSink::workers(StatusWatch::default(), 1).remove(0),
        Sessions::default(),
        Handoff::default(),
    );
    let both: BTreeSet<i32> = [0, 1].into();
    let starts =
        assign_all(&mut other, &h.fake, &[both.clone(), both.clone(), both]).expect("restored");
    assert_eq!(h.fake.calls(), RESTORED_BOTH);
    starts
}

#[test]
fn a_revoked_partition_given_back_keeps_its_state_without_a_restore() {
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let mut h = Harness::ready(guarantee);
        let restored = revoke_after_a_kill(&mut h);
        let handed = h.assign();
        // The changelog was only checked from where the parked state ends.
        assert_eq!(h.fake.calls(), [Call::CheckChangelog], "{guarantee:?}");
        let order = |mut starts: Vec<Start>| {
            starts.sort_by_key(|s| (s.partition, earlykill_core::merge::rank(s.topic)));
            starts
        };
        assert_eq!(
            order(handed),
            order(restored),
            "{guarantee:?}: starts as a restore's"
        );
        assert_eq!(h.status.get().handed_over, 2);
        // The state came along: v-1 stays killed, v-2 is decided anew.
        h.at_end();
        h.engage_poorly(0, "v-1");
        h.post(0, "v-2");
        h.engage_poorly(0, "v-2");
        h.step().unwrap();
        h.core.commit(&h.fake).unwrap();
        let mut want = STARTED_AND_KILLED.to_vec();
        want.extend([("v-2", "started"), ("v-2", "killed")]);
        assert_eq!(h.fake.decisions(), decided(&want), "{guarantee:?}");
    }
}

#[test]
fn a_partition_another_instance_wrote_meanwhile_is_restored_not_handed_over() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    revoke_after_a_kill(&mut h);
    h.fake.write_changelog_elsewhere(0);
    h.assign();
    assert_eq!(
        h.fake.calls(),
        [Call::CheckChangelog, Call::ReadChangelog],
        "partition 0 restored"
    );
    assert_eq!(h.status.get().handed_over, 1, "partition 1 handed over");
}

#[test]
fn an_empty_changelog_partition_is_read_with_the_next_one_not_after_it() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-0");
    h.step().unwrap();
    let mut h = h.restart();
    let before = h.fake.changelog_reads().len();
    h.assign();
    // Partition 1's changelog is empty: read in the same pass as 0.
    assert_eq!(h.fake.changelog_reads()[before..], [vec![0, 1]]);
    assert!(h.core.partitions[&0].monitor.session("v-0").is_some());
    assert_eq!(h.status.get().partitions, [0, 1]);
}

#[test]
fn a_revocation_whose_commit_failed_parks_nothing() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.engage_poorly(0, "v-1");
    h.fake.fail_next_commit(transient());
    h.core.revoked(&h.fake, &[0, 1].into());
    h.fake.calls();
    h.assign();
    assert_eq!(h.fake.calls(), RESTORED_BOTH);
    assert_eq!(h.status.get().handed_over, 0);
}

#[test]
fn a_compacted_changelog_restores_every_commit_its_last_partition_record_covers() {
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        // Two commits, the second's partition record replacing the first's
        // once the cleaner runs: v-1's record stays without its own.
        let mut h = Harness::ready(guarantee);
        h.post(0, "v-1");
        h.step().unwrap();
        h.post(0, "v-2");
        h.step().unwrap();
        h.fake.compact_changelog();
        let mut h = h.restart();
        h.assign();
        assert!(
            h.core.partitions[&0].monitor.session("v-1").is_some(),
            "{guarantee:?}"
        );
        assert!(
            h.core.partitions[&0].monitor.session("v-2").is_some(),
            "{guarantee:?}"
        );
    }
}

#[test]
fn partitions_are_restored_one_at_a_time_the_smallest_first() {
    let mut h = restarted_with_a_large_and_a_small_partition(Guarantee::ExactlyOnce);
    let before = h.fake.changelog_reads().len();
    h.assign();
    // Partition 1 (one session) was read first, alone, then partition 0.
    let reads = h.fake.changelog_reads();
    assert_eq!(reads[before..], [vec![1], vec![0]]);
    assert!(h.core.partitions[&0].monitor.session("v-0-2").is_some());
    assert!(h.core.partitions[&1].monitor.session("v-1-0").is_some());
}

/// A restarted harness over a changelog of three sessions on partition 0
/// and one on partition 1 (`v-1-0`), nothing assigned yet.
fn restarted_with_a_large_and_a_small_partition(guarantee: Guarantee) -> Harness {
    let mut h = Harness::ready(guarantee);
    for i in 0..3 {
        h.post(0, &format!("v-0-{i}"));
    }
    h.post(1, "v-1-0");
    h.step().unwrap();
    h.restart()
}

impl Harness {
    /// Partition 1's input is read from `starts`, to its end.
    fn read_partition_1_from(&mut self, starts: &[Start]) {
        for s in starts {
            if let StartAt::Offset(o) = s.at {
                self.next.insert((s.topic, s.partition), o);
            }
        }
        for topic in InputTopic::ALL {
            self.core.reached_end(topic, 1);
        }
    }
}

#[test]
fn a_restored_partition_is_live_while_the_others_still_restore() {
    for guarantee in [Guarantee::ExactlyOnce, Guarantee::AtLeastOnce] {
        let mut h = restarted_with_a_large_and_a_small_partition(guarantee);
        let before = h.fake.assignments().len();
        let both: BTreeSet<i32> = [0, 1].into();
        let now = h
            .core
            .assigned(&h.fake, &[both.clone(), both.clone(), both])
            .expect("assigned");
        assert!(
            now.is_empty(),
            "{guarantee:?}: nothing live before its restore"
        );
        assert_eq!(h.status.get().restoring, [0, 1], "{guarantee:?}");
        assert_eq!(h.fake.assignments().len(), before, "{guarantee:?}");

        // One step of the loop reads partition 1 (the smaller) to its end:
        // it alone is assigned, at its restored positions.
        h.core.restore_step(&h.fake).expect("a restore step");
        let assigned = h.fake.assignments().split_off(before);
        assert_eq!(assigned.len(), 1, "{guarantee:?}");
        assert!(assigned[0].iter().all(|s| s.partition == 1), "{assigned:?}");
        let posted_1 = |starts: &[Start]| {
            starts
                .iter()
                .find(|s| s.partition == 1 && s.topic == InputTopic::Posted)
                .expect("partition 1's posted topic")
                .at
        };
        assert_eq!(posted_1(&assigned[0]), StartAt::Offset(1), "{guarantee:?}");
        assert_eq!(h.status.get().restoring, [0], "{guarantee:?}");
        assert_eq!(h.status.get().partitions, [1], "{guarantee:?}");

        // Partition 1 folds and decides while partition 0 still restores.
        h.read_partition_1_from(&assigned[0]);
        h.post(1, "v-2");
        h.engage_poorly(1, "v-2");
        h.core.commit(&h.fake).expect("committed");
        let mut decisions = h.fake.decisions();
        decisions.retain(|(id, _)| id == "v-2");
        let want = [("v-2", "started"), ("v-2", "killed")];
        assert_eq!(decisions, decided(&want), "{guarantee:?}");
        assert!(
            h.core.restoring.is_some(),
            "{guarantee:?}: partition 0 still restoring"
        );

        // The next step restores partition 0: both are assigned, partition
        // 1 where its reading had got to (two posts), partition 0 at its
        // restored positions (three posts).
        h.core.restore_step(&h.fake).expect("a restore step");
        let assigned = h.fake.assignments().split_off(before);
        assert_eq!(assigned.len(), 2, "{guarantee:?}");
        assert_eq!(posted_1(&assigned[1]), StartAt::Offset(2), "{guarantee:?}");
        let posted_0 = assigned[1]
            .iter()
            .find(|s| s.partition == 0 && s.topic == InputTopic::Posted)
            .expect("partition 0's posted topic");
        assert_eq!(posted_0.at, StartAt::Offset(3), "{guarantee:?}");
        assert!(h.core.restoring.is_none(), "{guarantee:?}");
        // Partition 1's fetch restarted: the ends it had heard no longer
        // count (records may have arrived meanwhile).
        let caught = h.core.partitions[&1].caught(|_| None);
        assert_eq!(caught, [false; 3], "{guarantee:?}");
        let status = h.status.get();
        assert!(status.restoring.is_empty(), "{guarantee:?}");
        assert_eq!(status.partitions, [0, 1], "{guarantee:?}");
        assert_eq!(status.phase, crate::processor::lifecycle::Phase::Running);
        assert!(h.core.partitions[&0].monitor.session("v-0-2").is_some());
    }
}

#[test]
fn a_revocation_during_a_restore_stops_it_and_a_failed_commit_restores_the_rest_at_once() {
    let mut h = restarted_with_a_large_and_a_small_partition(Guarantee::ExactlyOnce);
    let both: BTreeSet<i32> = [0, 1].into();
    let by_topic = [both.clone(), both.clone(), both.clone()];
    h.core.assigned(&h.fake, &by_topic).expect("assigned");
    h.core.restore_step(&h.fake).expect("partition 1 live");
    h.core.revoked(&h.fake, &both);
    assert!(h.core.restoring.is_none(), "the restore stopped");
    assert!(h.core.owns_nothing());
    assert!(h.status.get().restoring.is_empty());

    // Assigned again: partition 1 live at once (handed over: it was
    // committed at the revocation), then a commit fails while partition 0
    // restores. The recovery restores both at once and assigns both
    // (partition 0 was never in the consumer's assignment, so a rewind
    // could not reach it).
    let live = h.core.assigned(&h.fake, &by_topic).expect("assigned");
    assert!(
        !live.is_empty() && live.iter().all(|s| s.partition == 1),
        "{live:?} {:?}",
        h.status.get()
    );
    h.read_partition_1_from(&live);
    h.fake.fail_next_commit(transient());
    h.post(1, "v-2");
    let assignments = h.fake.assignments().len();
    let failure = h.core.commit(&h.fake).expect_err("the commit fails");
    assert!(h.core.restoring.is_some(), "partition 0 still restoring");
    h.core.recover(&h.fake, failure).expect("recovered");
    assert!(h.core.restoring.is_none());
    assert!(h.status.get().restoring.is_empty());
    let last = h.fake.assignments();
    assert_eq!(last.len(), assignments + 1, "assigned, not rewound");
    let partitions: BTreeSet<i32> = last[assignments].iter().map(|s| s.partition).collect();
    assert_eq!(partitions, both);
    assert!(h.core.partitions[&0].monitor.session("v-0-2").is_some());
}
