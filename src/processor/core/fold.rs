//! Runs of records folded at once with
//! [`earlykill_core::monitor::Monitor::apply_batch`]: the merge's releases,
//! and records read while nothing waits in their partition's merge.

use earlykill_core::event::{Decoded, InputTopic, Millis, MonitoringDecision};
use earlykill_core::merge::{rank, Entry};
use earlykill_core::monitor::{Input, Outcome};

use super::{wall_millis, Core, Out};
use crate::processor::broker::{Broker, Inbound};
use crate::processor::committer::Failure;
use crate::processor::intake::{after_fold, DeadLetter};
use crate::processor::partition::{Partition, Record};
use crate::processor::ProcessorConfig;

/// One record of a run to fold.
pub(super) struct Folding<'r> {
    topic: InputTopic,
    offset: i64,
    what: Item<'r>,
}

enum Item<'r> {
    /// An event, with its key and value as read when the fold may refuse
    /// it (a post), and when its decisions were due.
    Event {
        input: Input<'r, 'r>,
        key: Option<&'r [u8]>,
        value: Option<&'r [u8]>,
        appended: Millis,
    },
    /// A record for the dead-letter topic, sent in its place in the run.
    Dead(&'r DeadLetter),
}

/// A run of released records (decoded when they were read), to fold with
/// [`fold_items`].
pub(super) fn released(run: &[(InputTopic, Entry<Record>)]) -> Vec<Folding<'_>> {
    run.iter()
        .map(|(topic, entry)| Folding {
            topic: *topic,
            offset: entry.offset,
            what: match &entry.item {
                Record::Event {
                    event,
                    appended,
                    post,
                    ..
                } => Item::Event {
                    input: Input::from(event),
                    // Only a post is refused, and a post keeps its bytes.
                    key: post.as_deref().map(|b| &b.key[..]),
                    value: post.as_deref().map(|b| &b.value[..]),
                    appended: *appended,
                },
                Record::Dead(dead) => Item::Dead(dead),
            },
        })
        .collect()
}

/// Folds `items` with one `apply_batch`, then sends, record by record in
/// their order, each one's dead letter and the decisions it made: what
/// folding them one by one would send.
pub(super) fn fold_items(
    out: &mut Out,
    broker: &impl Broker,
    config: &ProcessorConfig,
    p: i32,
    part: &mut Partition,
    decisions: &mut Vec<MonitoringDecision>,
    items: &[Folding<'_>],
) -> Result<(), Failure> {
    let inputs: Vec<Input<'_, '_>> = items
        .iter()
        .filter_map(|item| match item.what {
            Item::Event { input, .. } => Some(input),
            Item::Dead(_) => None,
        })
        .collect();
    let mut folded: Vec<(Outcome, usize)> = Vec::with_capacity(inputs.len());
    part.monitor
        .apply_batch(&inputs, decisions, |_, outcome, made| {
            folded.push((outcome, made))
        });
    let mut shadow = Vec::new();
    if !part.shadows.is_empty() {
        part.shadows.apply_batch(&inputs, &mut shadow);
    }
    let mut made = decisions.drain(..);
    let (mut next, mut sent) = (0, 0);
    for item in items {
        let (input, key, value, appended) = match item.what {
            Item::Event {
                input,
                key,
                value,
                appended,
            } => (input, key, value, appended),
            Item::Dead(dead) => {
                out.dead_letter(broker, item.topic, dead)?;
                continue;
            }
        };
        let (outcome, upto) = folded[next];
        next += 1;
        if let Some(rejection) = after_fold(outcome, input, config.monitor.max_sessions) {
            let dead = DeadLetter::refused(key, value, p, item.offset, rejection);
            out.dead_letter(broker, item.topic, &dead)?;
        }
        out.send(broker, made.by_ref().take(upto - sent), Some(appended))?;
        sent = upto;
    }
    drop(made);
    out.shadow_decisions(broker, &mut shadow)
}

impl Core {
    /// Decodes and validates records read from `topic`'s queue, in their
    /// order. A record the merge would release at once (nothing buffered
    /// in its partition, no other topic that could still give an earlier
    /// record) is folded without a copy or a second decode, together with
    /// the partition's next ones like it: one `apply_batch` per run, whose
    /// prefetches overlap the runs' cache misses. Any other record goes
    /// into its partition's merge.
    pub fn accept_batch<R: Inbound>(
        &mut self,
        broker: &impl Broker,
        topic: InputTopic,
        records: &[R],
    ) -> Result<(), Failure> {
        let Core {
            config,
            out,
            intake,
            partitions,
            decisions,
            records_in,
            ..
        } = self;
        let now = wall_millis();
        // The run being gathered: its partition and records, decoded.
        let mut run: Vec<(&R, Decoded<'_>)> = Vec::new();
        let mut run_of = 0;
        let mut fold = |out: &mut Out,
                        part: &mut Partition,
                        p: i32,
                        run: &mut Vec<(&R, Decoded<'_>)>|
         -> Result<(), Failure> {
            if run.is_empty() {
                return Ok(());
            }
            out.begin(broker)?;
            part.dirty = true;
            let items: Vec<Folding<'_>> = run
                .iter()
                .map(|(record, decoded)| Folding {
                    topic,
                    offset: record.offset(),
                    what: Item::Event {
                        input: Input::from(decoded),
                        key: record.key(),
                        value: record.value(),
                        appended: record.appended().unwrap_or(now),
                    },
                })
                .collect();
            fold_items(out, broker, config, p, part, decisions, &items)?;
            run.clear();
            Ok(())
        };
        for record in records {
            let p = record.partition();
            if p != run_of && !run.is_empty() {
                let part = partitions.get_mut(&run_of).expect("a run's partition");
                fold(out, part, run_of, &mut run)?;
            }
            let Some(part) = partitions.get_mut(&p) else {
                // Fetched before a revocation; its new owner reads it again.
                continue;
            };
            let offset = record.offset();
            part.read(topic, offset);
            out.counters.records_in += 1;
            records_in[rank(topic)] += 1;
            let (key, value) = (record.key(), record.value());
            let fetched_end = |t| broker.fetched_watermarks(t, p).map(|(_, high)| high);
            let entry = match intake
                .check(topic, key, value, config, now)
                .map_err(Failure::Registry)?
            {
                Ok(decoded) if part.folds_at_once(topic, config.merge_wait, fetched_end) => {
                    run.push((record, decoded));
                    run_of = p;
                    continue;
                }
                Ok(decoded) => Entry {
                    offset,
                    time: Some(Input::from(&decoded).event_time()),
                    item: Record::event(
                        decoded,
                        key.unwrap_or_default(),
                        value.unwrap_or_default(),
                        record.appended().unwrap_or(now),
                    ),
                },
                Err(rejection) => Entry {
                    offset,
                    time: None,
                    item: Record::Dead(Box::new(DeadLetter::of(record, rejection))),
                },
            };
            // The run comes first in the partition's order.
            fold(out, part, p, &mut run)?;
            part.push(topic, entry);
        }
        if let Some(part) = partitions.get_mut(&run_of) {
            fold(out, part, run_of, &mut run)?;
        }
        Ok(())
    }
}
