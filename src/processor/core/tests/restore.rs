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
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    for i in 0..3 {
        h.post(0, &format!("v-0-{i}"));
    }
    h.post(1, "v-1-0");
    h.step().unwrap();
    let mut h = h.restart();
    let before = h.fake.changelog_reads().len();
    h.assign();
    // Partition 1 (one session) was read first, alone, then partition 0.
    let reads = h.fake.changelog_reads();
    assert_eq!(reads[before..], [vec![1], vec![0]]);
    assert!(h.core.partitions[&0].monitor.session("v-0-2").is_some());
    assert!(h.core.partitions[&1].monitor.session("v-1-0").is_some());
}
