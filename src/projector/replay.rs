//! `earlykill replay`: read the decisions topic from offset 0 to its end
//! outside any group and rebuild the table, into the live schema (only
//! when asked explicitly) or into another schema, next to the live table.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::decisions::{DecisionReader, Unreadable};
use super::store::{connect, connect_in, create_schema, migrate, Applied, Positioned, Table};
use super::StoreError;
use crate::shutdown::Shutdown;

use super::config::ProjectorConfig;
use super::error::{kafka, ProjectorError};
use super::live::{open_store, runtime, MAX_POLL};

/// Where `earlykill replay` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// The live table (the URL's schema); its rows are deleted first.
    Live {
        /// The operator confirmed.
        confirmed: bool,
    },
    /// Another schema, created and migrated if needed; its copy of the
    /// table is emptied first. Naming the live table's schema (the URL's
    /// current schema) needs `confirmed_live`, as the live table does.
    Schema {
        /// The schema.
        name: String,
        /// The operator confirmed that it may be the live table.
        confirmed_live: bool,
    },
}

impl ReplayTarget {
    /// A schema other than the live table's.
    pub fn schema(name: &str) -> ReplayTarget {
        ReplayTarget::Schema {
            name: name.to_owned(),
            confirmed_live: false,
        }
    }
}

/// Progress of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Records read so far.
    pub read: u64,
    /// Records to read (from the partitions' offsets at the start).
    pub total: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    /// Rows deleted before the replay.
    pub removed: u64,
    /// Decisions read.
    pub read: u64,
    /// What the batches did.
    pub applied: Applied,
    /// Records that did not decode.
    pub undecodable: u64,
    /// Rows in the table after the replay, and how many are active.
    pub rows: (i64, i64),
    /// How long it took.
    pub elapsed: Duration,
}

fn plain_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// Refuses a replay of a topic whose partitions do not all start at offset
/// 0 (`starts` lists those that do not, with their first offset), unless
/// the loss is accepted; then warns.
fn check_complete(
    topic: &str,
    starts: Vec<(i32, i64)>,
    accept_lost: bool,
) -> Result<(), ProjectorError> {
    if starts.is_empty() {
        return Ok(());
    }
    let lost = starts.iter().map(|(_, low)| low).sum();
    let truncated = ProjectorError::TopicTruncated {
        topic: topic.to_owned(),
        starts,
        lost,
    };
    if !accept_lost {
        return Err(truncated);
    }
    tracing::warn!(error = %truncated, "replaying what is left, as --accept-lost-decisions asks");
    Ok(())
}

/// Rebuilds the table from the decisions topic, from offset 0 to the end
/// it has when the replay starts, calling `progress` after each batch.
pub fn replay(
    config: &ProjectorConfig,
    target: &ReplayTarget,
    mut progress: impl FnMut(ReplayProgress),
) -> Result<ReplaySummary, ProjectorError> {
    if config.table == Table::Shadow {
        return Err(ProjectorError::ShadowReplay);
    }
    let started = Instant::now();
    let runtime = runtime().map_err(|e| StoreError::Url(format!("cannot start a runtime: {e}")))?;
    let schema = match target {
        ReplayTarget::Live { confirmed: false } => return Err(ProjectorError::LiveNotConfirmed),
        ReplayTarget::Live { confirmed: true } => None,
        ReplayTarget::Schema { name, .. } if !plain_identifier(name) => {
            return Err(ProjectorError::BadSchema(name.clone()))
        }
        ReplayTarget::Schema {
            name,
            confirmed_live,
        } => {
            let pool = connect(&config.database_url, 1)?;
            let live = runtime.block_on(super::store::current_schema(&pool))?;
            if live.as_deref() == Some(name.as_str()) && !confirmed_live {
                return Err(ProjectorError::SchemaIsLive(name.clone()));
            }
            runtime.block_on(create_schema(&pool, name))?;
            let pool = connect_in(&config.database_url, 1, Some(name))?;
            runtime.block_on(migrate(&pool))?;
            Some(name.as_str())
        }
    };
    let shutdown = Shutdown::new();
    let store = open_store(
        &runtime,
        &config.database_url,
        config.pool_size,
        schema,
        &shutdown,
        config.retry_max,
        Table::Live,
    )?;

    let consumer: BaseConsumer = config
        .consumer(&format!("{}-replay", config.group_id))
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kafka("create the replay consumer"))?;
    let topic = &config.decisions_topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(kafka("read the decisions topic's metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut total = 0u64;
    let mut open: BTreeSet<i32> = BTreeSet::new();
    let mut starts = Vec::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .map_err(kafka("read the decisions topic's offsets"))?;
        total += u64::try_from(high - low).unwrap_or(0);
        if low > 0 {
            starts.push((p, low));
        }
        if high > low {
            open.insert(p);
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
    }
    check_complete(topic, starts, config.accept_lost_decisions)?;
    let removed = runtime.block_on(store.reset(&config.decisions_topic))?;
    tracing::info!(removed, schema = ?schema, "table emptied; replaying from offset 0");
    consumer
        .assign(&tpl)
        .map_err(kafka("assign the decisions partitions"))?;
    let mut reader = DecisionReader::new(config.registry.clone());
    let mut summary = ReplaySummary {
        removed,
        ..ReplaySummary::default()
    };
    let mut batch: Vec<Positioned> = Vec::with_capacity(config.batch_size);
    let write = |batch: &mut Vec<Positioned>, summary: &mut ReplaySummary| {
        if batch.is_empty() {
            return Ok::<_, ProjectorError>(());
        }
        let applied = runtime.block_on(store.apply_or_reject(topic, None, batch))?;
        summary.applied.started += applied.started;
        summary.applied.ended += applied.ended;
        summary.applied.skipped += applied.skipped;
        summary.applied.rejected += applied.rejected;
        batch.clear();
        Ok(())
    };
    let mut seen = 0u64;
    while !open.is_empty() {
        match consumer.poll(MAX_POLL) {
            Some(Ok(message)) => {
                seen += 1;
                match message.payload().map(|b| reader.read(b)) {
                    Some(Ok(decision)) => {
                        summary.read += 1;
                        batch.push(Positioned {
                            partition: message.partition(),
                            offset: message.offset(),
                            decision,
                        });
                    }
                    Some(Err(Unreadable::Registry(source))) => {
                        return Err(ProjectorError::Registry { source })
                    }
                    why => {
                        let why = match why {
                            Some(Err(Unreadable::Skip(why))) => why,
                            _ => "no value".to_owned(),
                        };
                        tracing::error!(
                            partition = message.partition(),
                            offset = message.offset(),
                            error = %why,
                            "decision does not decode; skipped"
                        );
                        summary.undecodable += 1;
                    }
                }
                if batch.len() >= config.batch_size {
                    write(&mut batch, &mut summary)?;
                    progress(ReplayProgress { read: seen, total });
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "replay consumer error; librdkafka retries"),
            None => {}
        }
    }
    write(&mut batch, &mut summary)?;
    progress(ReplayProgress {
        read: seen.max(total),
        total,
    });
    summary.rows = runtime.block_on(store.counts())?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    // librdkafka's mock cluster cannot delete records (DeleteRecords is
    // unsupported), so the check is tested here on the watermarks it reads.
    #[test]
    fn a_topic_that_no_longer_starts_at_zero_is_refused_unless_the_loss_is_accepted() {
        assert!(check_complete("d", vec![], false).is_ok());
        match check_complete("d", vec![(0, 2), (3, 40)], false) {
            Err(e @ ProjectorError::TopicTruncated { lost: 42, .. }) => {
                let message = e.to_string();
                assert!(message.contains("retention.ms=-1"), "{message}");
                assert!(message.contains("--accept-lost-decisions"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(check_complete("d", vec![(0, 2)], true).is_ok());
    }
}
