//! A backlog of input events with a known outcome, and the pure fold over it
//! as the oracle: the processor must publish exactly what the fold decides.

use std::time::Duration;

use earlykill::kafka::Topics;
use earlykill::processor::ProcessorConfig;
use earlykill_core::event::codec::encode_into;
use earlykill_core::event::{
    Contract, Interaction, InteractionKind, Millis, MonitoringDecision, StopMonitoring,
    VariantPosted,
};
use earlykill_core::monitor::{Input, Monitor, MonitorConfig};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::kafka::{Kafka, PATIENCE};
use super::{interaction, posted, MINUTE, SECOND};

/// One input event, owned.
pub enum Event {
    Posted(VariantPosted<'static>),
    Interaction(Interaction<'static>),
    Stop(StopMonitoring<'static>),
}

impl Event {
    pub fn input(&self) -> Input<'_, 'static> {
        match self {
            Event::Posted(p) => Input::Posted(p),
            Event::Interaction(i) => Input::Interaction(i),
            Event::Stop(s) => Input::Stop(s),
        }
    }
}

/// An hour ago: the backlog lies entirely in the past.
pub fn backlog_start() -> Millis {
    chrono::Utc::now().timestamp_millis() - 60 * MINUTE
}

/// `variants` posts spread over 40 minutes of event time; every third one
/// engages poorly within its first minute (killed), the others engage well
/// for five minutes (timed out with all their counts). Each variant's 100
/// views come as `view_events` events (the last carries the remainder), so
/// the backlog can be made as large as a test needs.
pub fn backlog(start: Millis, variants: u32, view_events: u32) -> Vec<(Millis, usize, Event)> {
    let mut events = Vec::new();
    for i in 0..variants {
        let id = format!("v-{i:04}");
        let t = start + Millis::from(i) * 40 * SECOND;
        events.push((t, 0, Event::Posted(posted(&id, t, 0.5))));
        let poor = i % 3 == 0;
        let likes = if poor { 12 } else { 60 };
        let spread = if poor { MINUTE } else { 5 * MINUTE };
        let views_each = 100 / i64::from(view_events);
        for v in 0..view_events {
            let count = if v + 1 == view_events {
                100 - views_each * i64::from(view_events - 1)
            } else {
                views_each
            };
            let at = t + SECOND + Millis::from(v) * 10;
            events.push((
                at,
                1,
                Event::Interaction(interaction(
                    &format!("{id}-view-{v}"),
                    &id,
                    InteractionKind::View,
                    count,
                    at,
                )),
            ));
        }
        for n in 0..likes {
            let at = t + 2 * SECOND + spread * Millis::from(n) / Millis::from(likes);
            events.push((
                at,
                1,
                Event::Interaction(interaction(
                    &format!("{id}-like-{n}"),
                    &id,
                    InteractionKind::Like,
                    1,
                    at,
                )),
            ));
        }
    }
    // Written in event-time order, as an upstream writes them: within one
    // topic partition the merge keeps offset order.
    events.sort_by_key(|(t, rank, _)| (*t, *rank));
    events
}

/// The pure fold over the events in event-time order, every session ended.
pub fn oracle(
    events: &[(Millis, usize, Event)],
    config: &ProcessorConfig,
) -> Vec<MonitoringDecision> {
    fold(events, config.monitor)
}

/// The pure fold with `config` over the events in event-time order, every
/// session ended.
pub fn fold(events: &[(Millis, usize, Event)], config: MonitorConfig) -> Vec<MonitoringDecision> {
    let mut sorted: Vec<_> = events.iter().collect();
    sorted.sort_by_key(|(t, rank, _)| (*t, *rank));
    let mut monitor = Monitor::new(config);
    let mut decisions = Vec::new();
    for (_, _, input) in sorted {
        monitor.apply(input.input(), &mut decisions);
    }
    monitor.advance_to(Millis::MAX / 2, &mut decisions);
    sort(decisions)
}

pub fn sort(mut decisions: Vec<MonitoringDecision>) -> Vec<MonitoringDecision> {
    decisions.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
    decisions
}

pub fn send_all(kafka: &Kafka, events: &[(Millis, usize, Event)]) {
    produce(
        &kafka.cluster.bootstrap_servers(),
        &kafka.config.topics,
        events,
    );
}

/// Writes `events` to their topics at `bootstrap`, keyed by variant and
/// partitioned as Java clients do, and waits until all are acknowledged.
pub fn produce(bootstrap: &str, topics: &Topics, events: &[(Millis, usize, Event)]) {
    let producer: BaseProducer<Refused> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Refused::default())
        .expect("producer");
    let mut buf = Vec::new();
    let mut sent = 0;
    for (_, _, event) in events {
        buf.clear();
        let (topic, key) = match event {
            Event::Posted(p) => {
                encode_into(Contract::VariantPosted, p, &mut buf).expect("encode");
                (&topics.posted, &p.variant_id)
            }
            Event::Interaction(i) => {
                encode_into(Contract::Interaction, i, &mut buf).expect("encode");
                (&topics.interactions, &i.variant_id)
            }
            Event::Stop(s) => {
                encode_into(Contract::StopMonitoring, s, &mut buf).expect("encode");
                (&topics.commands, &s.variant_id)
            }
        };
        let mut record =
            BaseRecord::<[u8], [u8], Box<usize>>::with_opaque_to(topic, Box::new(sent))
                .key(key.as_bytes())
                .payload(&buf[..]);
        sent += 1;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(PATIENCE).expect("flush");
    // A record the broker refused would leave the backlog short and the
    // test waiting for decisions that cannot come: say so at once.
    let refused = producer.context().0.lock().expect("lock").clone();
    assert!(
        refused.is_empty(),
        "the broker refused {} of {sent} input records, e.g. {:?}",
        refused.len(),
        refused.first()
    );
}

/// The delivery failures of [`produce`]'s producer: each record's index
/// and error.
#[derive(Default)]
struct Refused(std::sync::Mutex<Vec<(usize, String)>>);

impl rdkafka::ClientContext for Refused {}

impl rdkafka::producer::ProducerContext for Refused {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.0.lock().expect("lock").push((*index, e.to_string()));
        }
    }
}
