//! The metrics a worker copies out now and then rather than as things
//! happen: totals, active sessions, consumer lag in records and in time,
//! partition clocks and stalls.

use std::time::Instant;

use earlykill_core::event::{InputTopic, Millis};
use earlykill_core::merge::rank;

use super::Core;
use crate::processor::broker::Broker;
use crate::telemetry;

impl Core {
    /// Copies out the totals kept in plain counters, the active sessions
    /// and the consumer lag.
    pub(super) fn flush_metrics(&mut self, broker: &impl Broker) {
        self.last_flush = Instant::now();
        self.handoff.expire();
        let topics = &self.config.topics;
        let output = &self.out.output;
        let totals = [
            self.records_in[0],
            self.records_in[1],
            self.records_in[2],
            output.decisions,
            output.changelog,
            output.dead_letters,
        ];
        let added: [u64; 6] = std::array::from_fn(|i| totals[i].saturating_sub(self.flushed[i]));
        self.flushed = totals;
        let records_in = InputTopic::ALL.map(|t| (topics.input(t), added[rank(t)]));
        telemetry::add_records(
            &records_in,
            &[
                (&topics.decisions, added[3]),
                (&topics.changelog, added[4]),
                (&topics.dead_letters, added[5]),
            ],
        );
        let mut active = 0;
        let now = Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let mut stalled = Vec::new();
        for (&p, part) in self.partitions.iter_mut() {
            active += part.monitor.active_sessions();
            let stats = *part.monitor.stats();
            telemetry::fold_stats(&stats, &part.exported);
            part.exported = stats;
            let mut unread = 0;
            for topic in InputTopic::ALL {
                if let Some((low, high)) = broker.fetched_watermarks(topic, p) {
                    let position = part.position(topic).unwrap_or(low);
                    telemetry::consumer_lag(topics.input(topic), p, high - position);
                    unread += (high - position).max(0);
                }
            }
            let still = part.progressed(now);
            let stall = self.config.stall_after;
            let is_stalled = unread > 0 && !stall.is_zero() && still >= stall;
            if is_stalled {
                stalled.push(format!(
                    "partition {p}: {unread} records unread and no progress for {} s",
                    still.as_secs()
                ));
            }
            let clock = part.monitor.clock();
            telemetry::partition_time(
                p,
                (clock != Millis::MIN).then_some(clock),
                wall,
                unread > 0,
                is_stalled,
            );
        }
        if stalled != self.out.counters.stalled {
            for reason in &stalled {
                tracing::warn!(%reason, "a partition is stalled");
            }
            self.out.counters.stalled = stalled;
            self.publish();
        }
        self.status.sessions_active(active);
    }
}
