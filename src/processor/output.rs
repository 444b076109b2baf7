//! Output: the records the processor writes, built and sent. A decision
//! (framed as configured, with its kind, id and transaction in headers), a
//! dead letter (the rejected record cut to bounds, with the reason and its
//! source in headers), a changelog record (to the partition of its input).

use std::sync::Arc;

use rdkafka::error::KafkaError;

use super::broker::{Broker, OutRecord};
use super::intake::DeadLetter;
use super::ProcessorConfig;
use super::ProcessorError;
use crate::telemetry;
use earlykill_core::event::codec::{encode_framed_into, Framing};
use earlykill_core::event::datum::encode_changelog_into;
use earlykill_core::event::{ChangelogRecord, Contract, InputTopic, MonitoringDecision};
use earlykill_core::monitor::ChangelogChange;
use earlykill_core::shadow::ShadowDecision;

/// Longest key a dead letter copies; a longer one is cut and its size
/// given in `earlykill.source.key_size`.
const DEAD_LETTER_KEY_MAX: usize = 4096;
/// Longest reason text in a dead letter's `earlykill.error.message`.
const DEAD_LETTER_MESSAGE_MAX: usize = 1024;

/// A record that could not be sent or built.
#[derive(Debug)]
pub(crate) enum OutputError {
    /// The producer refused the record.
    Send {
        /// The record's topic.
        topic: String,
        source: KafkaError,
    },
    /// The record could not be encoded.
    Encode(ProcessorError),
}

/// Builds and sends the processor's records.
pub(crate) struct Output {
    config: Arc<ProcessorConfig>,
    /// How decisions are framed.
    framing: Framing,
    buf: Vec<u8>,
    /// Records sent, per output topic.
    pub decisions: u64,
    pub shadow_decisions: u64,
    pub dead_letters: u64,
    pub changelog: u64,
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn send(broker: &impl Broker, record: &OutRecord<'_>) -> Result<(), OutputError> {
    broker.send(record).map_err(|source| OutputError::Send {
        // Named only on failure: nothing per record on the way.
        topic: record.topic.to_owned(),
        source,
    })
}

impl Output {
    pub fn new(config: Arc<ProcessorConfig>, framing: Framing) -> Output {
        Output {
            config,
            framing,
            buf: Vec::with_capacity(512),
            decisions: 0,
            shadow_decisions: 0,
            dead_letters: 0,
            changelog: 0,
        }
    }

    /// Sends `decision`, keyed by its variant, in transaction `label`.
    pub fn decision(
        &mut self,
        broker: &impl Broker,
        decision: &MonitoringDecision,
        label: &str,
    ) -> Result<(), OutputError> {
        self.send_decision(broker, decision, None, label)?;
        self.decisions += 1;
        Ok(())
    }

    /// Sends a shadow policy's decision to the shadow decisions topic,
    /// keyed by its variant, with its policy in `earlykill.policy`.
    pub fn shadow_decision(
        &mut self,
        broker: &impl Broker,
        shadow: &ShadowDecision,
        label: &str,
    ) -> Result<(), OutputError> {
        self.send_decision(broker, &shadow.decision, Some(&shadow.policy), label)?;
        self.shadow_decisions += 1;
        Ok(())
    }

    /// A live decision (`policy` none) to the decisions topic, or a shadow
    /// policy's to the shadow decisions topic.
    fn send_decision(
        &mut self,
        broker: &impl Broker,
        decision: &MonitoringDecision,
        policy: Option<&str>,
        label: &str,
    ) -> Result<(), OutputError> {
        self.buf.clear();
        encode_framed_into(
            Contract::MonitoringDecision,
            self.framing,
            decision,
            &mut self.buf,
        )
        .map_err(|e| {
            OutputError::Encode(ProcessorError::Encode {
                what: "decision",
                reason: e.to_string(),
            })
        })?;
        let headers = [
            ("decision_kind", Some(decision.kind.as_str().as_bytes())),
            ("decision_id", Some(decision.decision_id.as_bytes())),
            ("earlykill_transaction", Some(label.as_bytes())),
            ("earlykill.policy", policy.map(str::as_bytes)),
        ];
        let (topic, headers) = match policy {
            None => (&self.config.topics.decisions, &headers[..3]),
            Some(_) => (&self.config.shadow_decisions_topic, &headers[..]),
        };
        send(
            broker,
            &OutRecord {
                topic,
                partition: None,
                key: Some(decision.variant_id.as_bytes()),
                value: Some(&self.buf),
                headers,
            },
        )
    }

    /// Sends a rejected record of `topic` to the dead-letter topic: its key,
    /// value and headers, each cut to a bound so that the dead letter always
    /// fits the producer's message size (the full sizes go in headers), and
    /// the reason.
    pub fn dead_letter(
        &mut self,
        broker: &impl Broker,
        topic: InputTopic,
        dead: &DeadLetter,
    ) -> Result<(), OutputError> {
        let config = &self.config;
        let source = config.topics.input(topic);
        let value_max = crate::processor::dead_letter_value_max(config.message_max_bytes);
        let headers_max = config.message_max_bytes / 16;
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(dead.headers.len() + 9);
        let (mut header_bytes, mut headers_dropped) = (0usize, 0usize);
        for (key, value) in &dead.headers {
            let size = key.len() + value.as_ref().map_or(0, Vec::len);
            if header_bytes + size > headers_max {
                headers_dropped += 1;
                continue;
            }
            header_bytes += size;
            headers.push((key, value.as_deref()));
        }
        let key = dead.key.as_deref();
        let value = dead.value.as_deref();
        let mut sizes = Vec::new();
        if let Some(k) = key.filter(|k| k.len() > DEAD_LETTER_KEY_MAX) {
            sizes.push(("earlykill.source.key_size", k.len().to_string()));
        }
        if let Some(v) = value.filter(|v| v.len() > value_max) {
            sizes.push(("earlykill.source.value_size", v.len().to_string()));
        }
        if headers_dropped > 0 {
            sizes.push((
                "earlykill.source.headers_dropped",
                headers_dropped.to_string(),
            ));
        }
        headers.extend(
            sizes
                .iter()
                .map(|(name, size)| (*name, Some(size.as_bytes()))),
        );
        let partition = dead.partition.to_string();
        let offset = dead.offset.to_string();
        let message = bounded_text(&dead.rejection.message, DEAD_LETTER_MESSAGE_MAX);
        headers.extend([
            ("earlykill.error.kind", Some(dead.rejection.kind.as_bytes())),
            ("earlykill.error.message", Some(message.as_bytes())),
            ("earlykill.source.topic", Some(source.as_bytes())),
            ("earlykill.source.partition", Some(partition.as_bytes())),
            ("earlykill.source.offset", Some(offset.as_bytes())),
        ]);
        send(
            broker,
            &OutRecord {
                topic: &config.topics.dead_letters,
                partition: None,
                key: key.map(|k| &k[..k.len().min(DEAD_LETTER_KEY_MAX)]),
                value: value.map(|v| &v[..v.len().min(value_max)]),
                headers: &headers,
            },
        )?;
        self.dead_letters += 1;
        telemetry::dead_letter(source, dead.rejection.kind);
        tracing::warn!(
            topic = %source,
            partition = dead.partition,
            offset = dead.offset,
            kind = dead.rejection.kind,
            message = %message,
            cut = !sizes.is_empty(),
            "dead letter"
        );
        Ok(())
    }

    /// Sends one changelog record to partition `partition`, the partition
    /// of its input; the partition's own record names the transaction
    /// `label` that wrote it, for tracing a restore back to its writer.
    fn changelog(
        &mut self,
        broker: &impl Broker,
        partition: i32,
        change: &ChangelogChange,
        label: &str,
    ) -> Result<(), OutputError> {
        self.buf.clear();
        if let Some(record) = &change.record {
            encode_changelog_into(record, &mut self.buf);
        }
        // The partition record names the commit it closes; each session
        // record names its commit too, shortly, so that a restore can tell
        // a commit's records from a torn one's (see the restorer).
        let writer = [("earlykill_transaction", Some(label.as_bytes()))];
        let commit = [(COMMIT_HEADER, Some(label.as_bytes()))];
        let own = change.key == ChangelogRecord::PARTITION_KEY;
        let result = send(
            broker,
            &OutRecord {
                topic: &self.config.topics.changelog,
                partition: Some(partition),
                key: Some(&change.kafka_key()),
                value: change.record.is_some().then_some(&self.buf[..]),
                headers: if own { &writer } else { &commit },
            },
        );
        self.changelog += 1;
        result
    }

    /// Sends changelog records, in order.
    pub fn write(
        &mut self,
        broker: &impl Broker,
        changes: &[(i32, ChangelogChange)],
        label: &str,
    ) -> Result<(), OutputError> {
        changes
            .iter()
            .try_for_each(|(p, change)| self.changelog(broker, *p, change, label))
    }
}

/// The header naming, on a changelog session record, the commit that
/// wrote it (the partition record's `earlykill_transaction`), kept short:
/// it is on every session record.
pub(crate) const COMMIT_HEADER: &str = "t";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::broker::fake::Fake;
    use earlykill_core::event::Rejection;

    #[test]
    fn a_dead_letter_is_cut_to_its_bounds_and_names_its_source_and_reason() {
        let mut config = ProcessorConfig::with_bootstrap("unused");
        config.guarantee = crate::processor::Guarantee::AtLeastOnce;
        config.message_max_bytes = 16 * 1024;
        let config = Arc::new(config);
        let broker = Fake::new(&config, 1);
        let mut output = Output::new(config.clone(), Framing::SingleObject);
        let dead = DeadLetter {
            key: Some(vec![b'k'; DEAD_LETTER_KEY_MAX + 1]),
            value: Some(vec![7; 64 * 1024]),
            headers: vec![
                ("trace".to_owned(), None),
                ("big".to_owned(), Some(vec![1; 2048])),
            ],
            rejection: Rejection {
                kind: "invalid_event",
                message: "é".repeat(DEAD_LETTER_MESSAGE_MAX),
            },
            partition: 0,
            offset: 41,
        };
        output
            .dead_letter(&broker, InputTopic::Interactions, &dead)
            .unwrap();
        let sent = broker.visible(&config.topics.dead_letters);
        let [letter] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(letter.topic, config.topics.dead_letters);
        assert_eq!(letter.key.as_ref().unwrap().len(), DEAD_LETTER_KEY_MAX);
        let value_max = crate::processor::dead_letter_value_max(config.message_max_bytes);
        assert_eq!(letter.value.as_ref().unwrap().len(), value_max);
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone().unwrap_or_default()).unwrap())
        };
        assert_eq!(header("trace").as_deref(), Some(""));
        assert_eq!(header("big"), None, "over a sixteenth of the message size");
        assert_eq!(
            header("earlykill.source.headers_dropped").as_deref(),
            Some("1")
        );
        assert_eq!(header("earlykill.source.key_size").as_deref(), Some("4097"));
        assert_eq!(
            header("earlykill.source.value_size").as_deref(),
            Some("65536")
        );
        assert_eq!(
            header("earlykill.error.kind").as_deref(),
            Some("invalid_event")
        );
        assert!(header("earlykill.error.message").unwrap().len() <= DEAD_LETTER_MESSAGE_MAX);
        assert_eq!(
            header("earlykill.source.topic").as_deref(),
            Some(config.topics.interactions.as_str())
        );
        assert_eq!(header("earlykill.source.offset").as_deref(), Some("41"));
        assert_eq!(output.dead_letters, 1);
    }
}
