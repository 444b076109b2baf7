//! The shell's protocol against the in-memory broker: the merge rule, the
//! commit / abort / rewind / restore protocol under both guarantees, dead
//! letters, revocation and backpressure. Each runs in milliseconds.

use std::collections::BTreeSet;
use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::Core;
use crate::processor::broker::fake::{transient, Call, Fake, In};
use crate::processor::broker::{Broker, Start, StartAt};
use crate::processor::handoff::Handoff;
use crate::processor::status::StatusSink;
use crate::processor::{Guarantee, ProcessorConfig};
use crate::processor::{ProcessorError, Sessions, StatusWatch};
use earlykill_core::event::codec::{encode, Framing};
use earlykill_core::event::{
    Contract, InputTopic, Interaction, InteractionKind, Millis, VariantPosted,
};

/// `core.assigned`, then the loop's steps until every partition is
/// restored: where every partition starts (the last assignment made, or
/// the callback's when everything was handed over).
fn assign_all(
    core: &mut Core,
    fake: &Fake,
    by_topic: &[BTreeSet<i32>; 3],
) -> Result<Vec<Start>, ProcessorError> {
    let before = fake.assignments().len();
    let mut starts = core.assigned(fake, by_topic)?;
    for _ in 0..1_000 {
        if core.restoring.is_none() {
            break;
        }
        core.restore_step(fake)?;
    }
    assert!(core.restoring.is_none(), "the restore ends");
    if let Some(last) = fake.assignments().get(before..).and_then(|a| a.last()) {
        starts = last.clone();
    }
    Ok(starts)
}

/// A processor core for partitions 0 and 1 over the fake, both assigned.
struct Harness {
    config: Arc<ProcessorConfig>,
    fake: Fake,
    core: Core,
    status: StatusWatch,
    /// The next offset of each (topic, partition) the harness writes.
    next: std::collections::HashMap<(InputTopic, i32), i64>,
    t0: Millis,
}

fn config(guarantee: Guarantee) -> ProcessorConfig {
    let mut config = ProcessorConfig::with_bootstrap("unused");
    config.guarantee = guarantee;
    // Every step commits what it opened.
    config.commit_interval = std::time::Duration::ZERO;
    config
}

impl Harness {
    fn new(config: ProcessorConfig) -> Harness {
        let config = Arc::new(config);
        let fake = Fake::new(&config, 2);
        Harness::on(config, fake)
    }

    /// A harness with both partitions assigned (from an empty changelog)
    /// and every input read to its end.
    fn ready(guarantee: Guarantee) -> Harness {
        let mut h = Harness::new(config(guarantee));
        h.assign();
        h.at_end();
        h
    }

    /// A new core (a restarted instance) over the same broker.
    fn restart(self) -> Harness {
        Harness::on(self.config, self.fake)
    }

    fn on(config: Arc<ProcessorConfig>, fake: Fake) -> Harness {
        let status = StatusWatch::default();
        let mut core = Core::new(
            config.clone(),
            Framing::SingleObject,
            2,
            StatusSink::workers(status.clone(), 1).remove(0),
            Sessions::default(),
            Handoff::default(),
        );
        // Subscribed, as the shell's worker is before any assignment.
        core.become_(crate::processor::lifecycle::Phase::Starting);
        Harness {
            config,
            fake,
            core,
            status,
            next: Default::default(),
            t0: chrono::Utc::now().timestamp_millis() - 60_000,
        }
    }

    fn assign(&mut self) -> Vec<Start> {
        let both: BTreeSet<i32> = [0, 1].into();
        let starts = assign_all(
            &mut self.core,
            &self.fake,
            &[both.clone(), both.clone(), both],
        )
        .expect("assigned");
        // The consumer starts where the restore says.
        for start in &starts {
            if let StartAt::Offset(o) = start.at {
                self.next.insert((start.topic, start.partition), o);
            }
        }
        starts
    }

    /// Sends one record of `topic` to partition `p` and lets the core read
    /// it; the partition's fetch is then at its end.
    fn read(&mut self, topic: InputTopic, p: i32, key: &str, value: Option<Vec<u8>>) {
        let offset = self.next.entry((topic, p)).or_insert(0);
        let record = In {
            topic: self.config.topics.input(topic).to_owned(),
            partition: p,
            offset: *offset,
            key: key.as_bytes().to_vec(),
            value,
            appended: self.t0 + 1_000,
        };
        *offset += 1;
        self.fake.fetched(topic, p, *offset);
        if let Err(failure) = self.core.accept(&self.fake, &record) {
            self.core.recover(&self.fake, failure).expect("recovered");
        }
    }

    /// Every input topic of both partitions read to its end.
    fn at_end(&mut self) {
        for p in [0, 1] {
            for topic in InputTopic::ALL {
                self.core.reached_end(topic, p);
            }
        }
    }

    fn post(&mut self, p: i32, id: &str) {
        let value = posted(id, self.t0);
        self.read(InputTopic::Posted, p, id, Some(value));
    }

    /// 100 views, then 10 likes: the tenth like kills (10 % engagement
    /// against a limit of half the expected 50 %).
    fn engage_poorly(&mut self, p: i32, id: &str) {
        let views = interaction(id, "views", InteractionKind::View, 100, self.t0 + 1);
        self.read(InputTopic::Interactions, p, id, Some(views));
        for i in 0..10 {
            let like = interaction(
                id,
                &format!("like-{i}"),
                InteractionKind::Like,
                1,
                self.t0 + 2 + i,
            );
            self.read(InputTopic::Interactions, p, id, Some(like));
        }
    }

    /// 100 views of `id`, a minute after T0, read on partition 0.
    fn view(&mut self, id: &str) {
        let value = interaction(id, "v", InteractionKind::View, 100, self.t0 + 1);
        self.read(InputTopic::Interactions, 0, id, Some(value));
    }

    /// After a refused delivery stopped it: a restarted process (its
    /// producer new, the brokers taking everything again), assigned and
    /// read to the end; returns where partition 0's interactions start.
    fn restart_after_refusal(self) -> (Harness, StartAt) {
        self.fake.fail_deliveries(None);
        self.fake.new_producer();
        let mut h = self.restart();
        let starts = h.assign();
        h.at_end();
        let at = starts
            .iter()
            .find(|s| s.topic == InputTopic::Interactions && s.partition == 0)
            .expect("a start")
            .at;
        (h, at)
    }

    /// The views partition 0's session of `id` holds.
    fn views(&self, id: &str) -> i64 {
        self.core.partitions[&0]
            .monitor
            .session(id)
            .expect("known")
            .state
            .views
    }

    fn step(&mut self) -> Result<(), ProcessorError> {
        self.core.step(&self.fake, true)
    }

    /// From now on the brokers refuse the changelog's partition records
    /// (empty key) for good, while its session records land: a torn commit.
    fn refuse_partition_records(&self) {
        self.fake
            .fail_unkeyed_deliveries(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            ));
    }
}

fn posted(id: &str, at: Millis) -> Vec<u8> {
    let post = VariantPosted {
        variant_id: id.into(),
        persona_id: "persona".into(),
        post_id: format!("post-{id}").into(),
        posted_at: at,
        expected_engagement_rate: 0.5,
        kill_threshold: None,
        min_interactions: None,
        timeout_minutes: None,
        metadata: Default::default(),
    };
    encode(Contract::VariantPosted, &post).unwrap()
}

fn interaction(id: &str, event: &str, kind: InteractionKind, count: i64, at: Millis) -> Vec<u8> {
    let event = Interaction {
        event_id: format!("{id}-{event}").into(),
        variant_id: id.into(),
        kind,
        count,
        occurred_at: at,
    };
    encode(Contract::Interaction, &event).unwrap()
}

/// `(variant, kind)` pairs, as [`Fake::decisions`] gives them.
fn decided(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(id, kind)| ((*id).to_owned(), (*kind).to_owned()))
        .collect()
}

const STARTED_AND_KILLED: [(&str, &str); 2] = [("v-1", "started"), ("v-1", "killed")];

/// Both partitions restored where at least one changelog partition is
/// empty: read together, in one pass.
const RESTORED_BOTH: [Call; 1] = [Call::ReadChangelog];

#[test]
fn an_empty_changelog_starts_every_topic_where_auto_offset_reset_says() {
    let mut h = Harness::new(config(Guarantee::ExactlyOnce));
    let starts = h.assign();
    assert_eq!(starts.len(), 6);
    assert!(starts.iter().all(|s| s.at == StartAt::Reset), "{starts:?}");
    assert_eq!(h.fake.calls(), RESTORED_BOTH);
}

#[test]
fn exactly_once_the_decision_changelog_and_offsets_become_visible_together_at_the_commit() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.engage_poorly(0, "v-1");
    // Sent, in the open transaction, and nothing visible yet.
    let pending = h.fake.pending();
    assert!(pending.iter().any(|r| r.topic == h.config.topics.decisions));
    assert!(h.fake.decisions().is_empty());
    assert_eq!(h.fake.offset(InputTopic::Interactions, 0), None);
    h.step().unwrap();
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
    assert_eq!(h.fake.offset(InputTopic::Posted, 0), Some(1));
    assert_eq!(h.fake.offset(InputTopic::Interactions, 0), Some(11));
    assert!(h.fake.pending().is_empty());
    let changelog = h.fake.visible(&h.config.topics.changelog);
    let own = changelog.last().unwrap();
    assert_eq!(
        own.key.as_deref(),
        Some(&b""[..]),
        "the partition record comes last"
    );
    let decision = &h.fake.visible(&h.config.topics.decisions)[0];
    assert_eq!(
        decision.header("earlykill_transaction"),
        own.header("earlykill_transaction"),
        "the decision and the state it leaves name the same transaction"
    );
    let calls = h.fake.calls();
    assert_eq!(calls.iter().filter(|c| **c == Call::Begin).count(), 1);
    assert_eq!(calls.last(), Some(&Call::Commit));
    let status = h.status.get();
    assert_eq!((status.commits, status.committed_decisions), (1, 2));
    assert_eq!(status.last_committed_transaction, 1);
}

#[test]
fn the_merge_waits_for_a_topic_that_is_behind_and_then_folds_by_event_time() {
    let mut h = Harness::new(config(Guarantee::ExactlyOnce));
    h.assign();
    // The interactions arrive first; posted and commands are not read to
    // their end yet, so nothing may be folded (the interactions would be
    // held as early arrivals and the kill come late).
    h.engage_poorly(0, "v-1");
    h.step().unwrap();
    assert!(
        h.fake.calls().iter().all(|c| *c != Call::Begin),
        "nothing folded"
    );
    h.post(0, "v-1");
    h.at_end();
    h.step().unwrap();
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
    assert_eq!(h.fake.offset(InputTopic::Interactions, 0), Some(11));
}

#[test]
fn an_abortable_failure_aborts_restores_the_last_commit_and_rewinds_to_its_offsets() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.step().unwrap();
    assert_eq!(h.fake.offset(InputTopic::Posted, 0), Some(1));
    h.fake.calls();
    h.post(1, "v-2");
    h.engage_poorly(0, "v-1");
    h.fake.fail_next_commit(transient());
    h.step().unwrap();
    let calls = h.fake.calls();
    let after_commit = &calls[calls.iter().position(|c| *c == Call::Commit).unwrap()..];
    assert_eq!(
        after_commit,
        [Call::Commit, Call::Abort, Call::ReadChangelog, Call::Rewind]
    );
    // The aborted transaction's v-2 start and v-1 kill are not visible.
    assert_eq!(h.fake.decisions(), decided(&[("v-1", "started")]));
    let rewind = h.fake.rewinds().pop().unwrap();
    let at = |topic, partition| {
        rewind
            .iter()
            .find(|s| s.topic == topic && s.partition == partition)
            .unwrap()
            .at
    };
    assert_eq!(at(InputTopic::Posted, 0), StartAt::Offset(1));
    assert_eq!(at(InputTopic::Interactions, 0), StartAt::Beginning);
    assert_eq!(
        at(InputTopic::Posted, 1),
        StartAt::Reset,
        "partition 1 has no state"
    );
    let status = h.status.get();
    assert_eq!(
        (status.aborts, status.aborted_transactions.clone()),
        (1, vec![2])
    );
    // Read again from the rewind, the same records make the same kill,
    // once.
    h.next.clear();
    for s in &rewind {
        if let StartAt::Offset(o) = s.at {
            h.next.insert((s.topic, s.partition), o);
        }
    }
    h.at_end();
    h.post(1, "v-2");
    h.engage_poorly(0, "v-1");
    h.step().unwrap();
    assert_eq!(
        h.fake.decisions(),
        decided(&[("v-1", "started"), ("v-2", "started"), ("v-1", "killed")])
    );
    assert_eq!(h.fake.offset(InputTopic::Posted, 1), Some(1));
}

#[test]
fn a_fenced_producer_stops_the_processor_naming_its_transactional_id() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.fake.fail_next_commit(KafkaError::MessageProduction(
        RDKafkaErrorCode::ProducerFenced,
    ));
    match h.step() {
        Err(ProcessorError::Fenced {
            transactional_id, ..
        }) => assert_eq!(transactional_id, h.config.transactional_id()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failures_in_a_row_give_up_after_the_retries_and_a_success_resets_the_count() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.fake.fail_next_commit(transient());
    h.step().unwrap();
    assert_eq!(h.status.get().aborts, 1);
    h.at_end();
    h.post(0, "v-1");
    h.step().unwrap();
    assert_eq!(h.status.get().commits, 1);
    for _ in 0..=super::super::committer::MAX_FAILURES_IN_A_ROW {
        h.fake.fail_next_commit(transient());
    }
    let mut outcome = Ok(());
    for round in 0..=super::super::committer::MAX_FAILURES_IN_A_ROW {
        h.at_end();
        h.post(0, &format!("v-{round}"));
        outcome = h.step();
        if outcome.is_err() {
            assert_eq!(round, super::super::committer::MAX_FAILURES_IN_A_ROW);
        }
    }
    match outcome {
        Err(ProcessorError::Kafka { action, .. }) => {
            assert!(action.contains("gave up"), "{action}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_instance_restores_the_state_and_starts_after_the_committed_offsets() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.read(
        InputTopic::Interactions,
        0,
        "v-1",
        Some(interaction(
            "v-1",
            "v",
            InteractionKind::View,
            100,
            h.t0 + 1,
        )),
    );
    h.step().unwrap();
    assert_eq!(h.fake.decisions(), decided(&[("v-1", "started")]));
    let mut h = h.restart();
    let starts = h.assign();
    let at = |topic, partition| {
        starts
            .iter()
            .find(|s: &&Start| s.topic == topic && s.partition == partition)
            .unwrap()
            .at
    };
    assert_eq!(at(InputTopic::Posted, 0), StartAt::Offset(1));
    assert_eq!(at(InputTopic::Interactions, 0), StartAt::Offset(1));
    assert_eq!(at(InputTopic::Commands, 0), StartAt::Beginning);
    let status = h.status.get();
    assert_eq!(status.restored_from.len(), 1);
    assert!(
        status.restored_from[0].1.ends_with("/1"),
        "{:?}",
        status.restored_from
    );
    // The restored session goes on where it was: ten likes now kill.
    h.at_end();
    for i in 0..10 {
        let like = interaction(
            "v-1",
            &format!("like-{i}"),
            InteractionKind::Like,
            1,
            h.t0 + 2 + i,
        );
        h.read(InputTopic::Interactions, 0, "v-1", Some(like));
    }
    h.step().unwrap();
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
}

#[test]
fn at_least_once_acknowledges_the_decisions_before_the_changelog_and_then_commits_offsets() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.fake.calls();
    h.post(0, "v-1");
    h.engage_poorly(0, "v-1");
    h.step().unwrap();
    let calls = h.fake.calls();
    let decisions = Call::Send(h.config.topics.decisions.clone());
    let changelog = Call::Send(h.config.topics.changelog.clone());
    let kill = calls.iter().position(|c| *c == decisions).unwrap();
    let first_state = calls.iter().position(|c| *c == changelog).unwrap();
    let flushes: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i] == Call::Flush)
        .collect();
    assert!(!calls.contains(&Call::Begin), "no transactions");
    assert!(kill < flushes[0] && flushes[0] < first_state, "{calls:?}");
    assert!(flushes[1] > first_state);
    assert_eq!(calls.last(), Some(&Call::CommitOffsets));
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
    assert_eq!(h.fake.offset(InputTopic::Interactions, 0), Some(11));
}

#[test]
fn at_least_once_a_lost_decision_rewinds_before_the_state_moves() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-1");
    h.fake.fail_deliveries(Some(KafkaError::MessageProduction(
        RDKafkaErrorCode::RequestTimedOut,
    )));
    h.engage_poorly(0, "v-1");
    h.step().unwrap();
    assert!(
        h.fake.visible(&h.config.topics.changelog).is_empty(),
        "no state written"
    );
    assert_eq!(h.fake.offset(InputTopic::Interactions, 0), None);
    assert_eq!(h.status.get().aborts, 1);
    assert_eq!(h.fake.calls().last(), Some(&Call::Rewind));
}

#[test]
fn a_record_refused_for_good_stops_the_processor_instead_of_looping() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-1");
    h.fake.fail_deliveries(Some(KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageSizeTooLarge,
    )));
    h.engage_poorly(0, "v-1");
    match h.step() {
        Err(ProcessorError::RecordRefused { topic, .. }) => {
            assert_eq!(topic, h.config.topics.decisions)
        }
        other => panic!("{other:?}"),
    }
}

/// At-least-once: a changelog whose session records the brokers refuse
/// must not have its partition record (the positions) land alone, or a
/// restore would resume past input that its sessions never counted.
#[test]
fn at_least_once_the_positions_land_only_after_the_sessions_they_cover() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-1");
    h.step().unwrap();
    h.fake.fail_keyed_deliveries(KafkaError::MessageProduction(
        RDKafkaErrorCode::MessageSizeTooLarge,
    ));
    h.view("v-1");
    assert!(h.step().is_err(), "a refused session record stops it");
    // Restarted, it resumes before the view: the view is counted again
    // rather than lost.
    let (_, interactions) = h.restart_after_refusal();
    assert_eq!(interactions, StartAt::Beginning);
}

/// At-least-once, the other way: session records landed and their
/// partition record was refused. The restore must not count those session
/// records, or the view folded again from the older positions would count
/// twice.
#[test]
fn at_least_once_session_records_without_their_positions_are_not_restored() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-1");
    h.step().unwrap();
    h.refuse_partition_records();
    h.view("v-1");
    assert!(h.step().is_err(), "a refused partition record stops it");
    let (mut h, interactions) = h.restart_after_refusal();
    assert_eq!(interactions, StartAt::Beginning);
    // The view is read again and counted once.
    h.view("v-1");
    h.step().unwrap();
    assert_eq!(h.views("v-1"), 100, "the view counted once");
}

/// At-least-once: a commit torn (its session records landed, its
/// positions refused), then a new run's first commit that rewrites only
/// some of those sessions. A later restore must not take the torn records
/// of the others as committed by that new commit's positions.
#[test]
fn at_least_once_a_torn_commit_stays_torn_after_the_next_runs_commit() {
    let mut h = Harness::ready(Guarantee::AtLeastOnce);
    h.post(0, "v-1");
    h.post(0, "v-2");
    h.step().unwrap();
    h.refuse_partition_records();
    h.view("v-1");
    h.view("v-2");
    assert!(h.step().is_err(), "the torn commit stops it");
    // The next run folds v-1's view again and commits, not v-2's yet.
    let (mut h, _) = h.restart_after_refusal();
    h.view("v-1");
    h.step().unwrap();
    // Then it stops, and the run after it restores: v-2's view is still
    // ahead of the positions, so v-2 must not have it yet.
    let (mut h, _) = h.restart_after_refusal();
    h.view("v-2");
    h.step().unwrap();
    assert_eq!(h.views("v-1"), 100);
    assert_eq!(h.views("v-2"), 100, "v-2's view counted once");
}

#[test]
fn an_undecodable_record_is_a_dead_letter_in_the_same_transaction_as_its_offset() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.read(InputTopic::Posted, 0, "v-1", Some(b"\x00not avro".to_vec()));
    h.step().unwrap();
    let letters = h.fake.visible(&h.config.topics.dead_letters);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header("origin").as_deref(), Some("test"));
    assert_eq!(
        letters[0].header("earlykill.source.offset").as_deref(),
        Some("0")
    );
    assert_eq!(h.fake.offset(InputTopic::Posted, 0), Some(1));
    assert_eq!(h.status.get().dead_letters, 1);
}

/// A post the merge held is folded from its decoded copy; refused for the
/// session limit, its dead letter still carries the record as read.
#[test]
fn a_held_post_refused_for_the_session_limit_is_a_dead_letter_with_its_bytes() {
    let mut config = config(Guarantee::ExactlyOnce);
    config.monitor.max_sessions = 1;
    let mut h = Harness::new(config);
    h.assign();
    h.post(0, "v-1");
    h.post(0, "v-2");
    h.step().unwrap();
    assert!(
        h.fake.calls().iter().all(|c| *c != Call::Begin),
        "both posts held by the merge"
    );
    h.at_end();
    h.step().unwrap();
    let letters = h.fake.visible(&h.config.topics.dead_letters);
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].header("earlykill.error.kind").as_deref(),
        Some("session_limit")
    );
    assert_eq!(letters[0].key.as_deref(), Some(&b"v-2"[..]));
    assert_eq!(letters[0].value, Some(posted("v-2", h.t0)));
    assert_eq!(h.fake.decisions(), decided(&[("v-1", "started")]));
}

#[test]
fn a_revocation_commits_the_open_work_and_drops_the_partitions_state() {
    let mut h = Harness::ready(Guarantee::ExactlyOnce);
    h.post(0, "v-1");
    h.engage_poorly(0, "v-1");
    h.core.revoked(&h.fake, &[0, 1].into());
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
    assert!(h.core.owns_nothing());
    assert!(h.status.get().committed.is_empty());
}

#[test]
fn an_assignment_of_partitions_not_aligned_across_topics_is_refused() {
    let mut h = Harness::new(config(Guarantee::ExactlyOnce));
    let result = h
        .core
        .assigned(&h.fake, &[[0].into(), [0, 1].into(), [0].into()]);
    assert!(matches!(
        result,
        Err(ProcessorError::MisalignedAssignment { .. })
    ));
    let grown = h
        .core
        .assigned(&h.fake, &[[2].into(), [2].into(), [2].into()]);
    assert!(matches!(
        grown,
        Err(ProcessorError::PartitionsAdded {
            partition: 2,
            counted: 2
        })
    ));
}

#[test]
fn a_topic_that_fills_the_merge_is_paused_and_resumed_once_it_drains() {
    let mut config = config(Guarantee::ExactlyOnce);
    config.max_buffered = 4;
    let mut h = Harness::new(config);
    h.assign();
    h.engage_poorly(0, "v-1");
    h.step().unwrap();
    assert!(h.fake.is_paused(InputTopic::Interactions, 0));
    assert!(!h.fake.is_paused(InputTopic::Interactions, 1));
    h.post(0, "v-1");
    h.at_end();
    h.step().unwrap();
    assert!(!h.fake.is_paused(InputTopic::Interactions, 0));
    assert_eq!(h.fake.decisions(), decided(&STARTED_AND_KILLED));
}

#[test]
fn the_fake_refuses_sends_outside_a_transaction_so_the_core_always_begins_first() {
    // The guard the other tests rely on: a send without a transaction
    // under exactly-once is a bug the fake makes loud.
    let config = Arc::new(config(Guarantee::ExactlyOnce));
    let fake = Fake::new(&config, 1);
    let send = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fake.send(&crate::processor::broker::OutRecord {
            topic: "t",
            partition: None,
            key: None,
            value: None,
            headers: &[],
        })
    }));
    assert!(send.is_err());
}

mod restore;

/// Records taken from a topic's queue together decide and dead-letter
/// exactly as the same records accepted one by one: runs end where the
/// partition changes and where a record must wait in the merge.
#[test]
fn a_batch_from_a_queue_decides_as_its_records_one_by_one() {
    let run = |batched: bool| {
        let mut h = Harness::ready(Guarantee::ExactlyOnce);
        let (t0, bad) = (h.t0, Some(b"\x00not avro".to_vec()));
        let like = |id: &str, i: i64| {
            interaction(id, &format!("l{i}"), InteractionKind::Like, 1, t0 + 2 + i)
        };
        let views = |id: &str| interaction(id, "views", InteractionKind::View, 100, t0 + 1);
        let posts = vec![
            (0, "v-1", Some(posted("v-1", t0))),
            (1, "v-2", Some(posted("v-2", t0))),
            (0, "v-3", Some(posted("v-3", t0))),
        ];
        let mut engaged = vec![
            (0, "v-1", Some(views("v-1"))),
            (1, "v-2", Some(views("v-2"))),
            (1, "v-2", Some(views("v-2"))),
        ];
        // Runs of one to ten records, and a record the merge must hold
        // (the rest of partition 0 waits behind it).
        for i in 0..10 {
            engaged.push((0, "v-1", Some(like("v-1", i))));
            if i == 4 {
                engaged.push((0, "v-3", bad.clone()));
            }
        }
        engaged.extend((0..10).map(|i| (1, "v-2", Some(like("v-2", i)))));
        for (topic, records) in [
            (InputTopic::Posted, posts),
            (InputTopic::Interactions, engaged),
        ] {
            let records: Vec<In> = records
                .into_iter()
                .map(|(p, key, value)| {
                    let offset = h.next.entry((topic, p)).or_insert(0);
                    *offset += 1;
                    h.fake.fetched(topic, p, *offset);
                    In {
                        topic: h.config.topics.input(topic).to_owned(),
                        partition: p,
                        offset: *offset - 1,
                        key: key.as_bytes().to_vec(),
                        value,
                        appended: t0 + 1_000,
                    }
                })
                .collect();
            if batched {
                h.core.accept_batch(&h.fake, topic, &records).unwrap();
            } else {
                for record in &records {
                    h.core.accept(&h.fake, record).unwrap();
                }
            }
        }
        h.step().unwrap();
        let letters = h.fake.visible(&h.config.topics.dead_letters);
        let offsets: Vec<_> = letters
            .iter()
            .map(|l| l.header("earlykill.source.offset"))
            .collect();
        (h.fake.decisions(), offsets, h.views("v-1"))
    };
    let one_by_one = run(false);
    assert_eq!(run(true), one_by_one);
    let (decisions, letters, views) = one_by_one;
    assert_eq!(letters, [Some("6".to_owned())]);
    assert_eq!(views, 100);
    let kills = decisions
        .iter()
        .filter(|(_, kind)| kind == "killed")
        .count();
    assert_eq!((decisions.len(), kills), (5, 2), "{decisions:?}");
}
