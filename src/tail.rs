//! `earlykill tail`: any earlykill topic as JSON lines, so that an operator
//! can look at records no standard tool decodes.
//!
//! Each record's schema fingerprint says what it is (every record type of
//! the contract, its history versions and `--schema-dir` versions are
//! known), so one command reads inputs, decisions, the changelog and dead
//! letters alike. A dead letter's value is the rejected record: it is
//! decoded when it can be, and shown as base64 with the reason otherwise.
//! Reads committed records only, outside any consumer group.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Map, Value};

use earlykill_core::event::codec::split_header;
use earlykill_core::event::schema::WriterSchemas;
use earlykill_core::event::{
    ChangelogRecord, Contract, Decoder, Interaction, MonitoringDecision, StopMonitoring,
    VariantPosted,
};

/// Where to start reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first record still in the topic.
    Beginning,
    /// Only records written from now on (with `follow`), or nothing.
    End,
    /// This offset (in every partition read).
    Offset(i64),
    /// This many records before the end of each partition.
    Last(i64),
}

impl std::str::FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beginning" | "earliest" => Ok(Start::Beginning),
            "end" | "latest" => Ok(Start::End),
            other => {
                if let Some(n) = other.strip_prefix("last:") {
                    return n
                        .parse()
                        .map(Start::Last)
                        .map_err(|_| format!("{other:?}: expected last:N"));
                }
                other
                    .parse()
                    .map(Start::Offset)
                    .map_err(|_| format!("{other:?} is not beginning, end, an offset or last:N"))
            }
        }
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Kafka bootstrap servers.
    pub bootstrap_servers: String,
    /// librdkafka properties (SASL, TLS, …).
    pub kafka: BTreeMap<String, String>,
    /// The topic.
    pub topic: String,
    /// Partitions to read; empty for all.
    pub partitions: Vec<i32>,
    /// Where to start.
    pub from: Start,
    /// Keep reading new records instead of stopping at the end the topic
    /// had when the command started.
    pub follow: bool,
    /// Stop after this many records.
    pub max: Option<u64>,
    /// Extra writer schemas (`--schema-dir`).
    pub schemas: WriterSchemas,
    /// The schema registry, for records framed by Confluent's serializers.
    pub registry: Option<crate::registry::Registry>,
    /// Timeout of metadata and offset requests.
    pub timeout: Duration,
}

/// Why tail could not read.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A Kafka call failed.
    #[error("could not {action}: {source}")]
    Kafka {
        /// What it was doing.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// No broker answered at the bootstrap servers.
    #[error(transparent)]
    Unreachable(#[from] crate::kafka::Unreachable),
    /// The topic or a partition asked for does not exist.
    #[error("{0}")]
    NoSuch(String),
    /// Writing the output failed (a closed pipe ends tail quietly).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn kafka(action: &'static str) -> impl FnOnce(KafkaError) -> TailError {
    move |source| TailError::Kafka { action, source }
}

/// Every record type's decoder, to find a record's by its fingerprint.
struct Decoders(Vec<Decoder>);

impl Decoders {
    fn new(schemas: &WriterSchemas) -> Self {
        Decoders(Contract::ALL.iter().map(|&c| schemas.decoder(c)).collect())
    }

    /// Fetches the schema of registry id `id` and gives it to the decoder
    /// of the record type it is a version of.
    fn learn(&mut self, registry: &crate::registry::Registry, id: u32) -> Result<(), String> {
        let json = registry.schema(id).map_err(|e| e.to_string())?;
        for decoder in &mut self.0 {
            if decoder.register_registry_schema(id, &json).is_ok() {
                return Ok(());
            }
        }
        Err(format!(
            "schema registry id {id} is none of earlykill's record types"
        ))
    }

    /// The record as JSON with its type's name, or why it does not decode.
    fn decode(&self, bytes: &[u8]) -> Result<(Contract, Value), String> {
        let decoder = match earlykill_core::event::codec::registry_id(bytes) {
            Some(id) => self.0.iter().find(|d| d.knows_id(id)).ok_or_else(|| {
                format!(
                    "Confluent Schema Registry framed with schema id {id}, not known \
                     (give --schema-registry-url)"
                )
            })?,
            None => self.find(bytes)?,
        };
        Self::decode_with(decoder, bytes)
    }

    fn find(&self, bytes: &[u8]) -> Result<&Decoder, String> {
        let (fingerprint, _) = split_header(bytes).map_err(|e| e.to_string())?;
        self.0
            .iter()
            .find(|d| d.knows(&fingerprint))
            .ok_or_else(|| {
                let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "writer schema fingerprint {hex} is none of earlykill's schemas \
                     (add its .avsc with --schema-dir)"
                )
            })
    }

    fn decode_with(decoder: &Decoder, bytes: &[u8]) -> Result<(Contract, Value), String> {
        let contract = decoder.contract();
        let to_json = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
        let value = match contract {
            Contract::VariantPosted => decoder
                .decode::<VariantPosted>(bytes)
                .map(|v| to_json(serde_json::to_value(v))),
            Contract::Interaction => decoder
                .decode::<Interaction>(bytes)
                .map(|v| to_json(serde_json::to_value(v))),
            Contract::StopMonitoring => decoder
                .decode::<StopMonitoring>(bytes)
                .map(|v| to_json(serde_json::to_value(v))),
            Contract::MonitoringDecision => decoder
                .decode::<MonitoringDecision>(bytes)
                .map(|v| to_json(serde_json::to_value(v))),
            Contract::ChangelogRecord => decoder
                .decode::<ChangelogRecord>(bytes)
                .map(|v| to_json(serde_json::to_value(v))),
        }
        .map_err(|e| e.to_string())??;
        Ok((contract, value))
    }
}

fn record_name(contract: Contract) -> &'static str {
    match contract {
        Contract::VariantPosted => "VariantPosted",
        Contract::Interaction => "Interaction",
        Contract::StopMonitoring => "StopMonitoring",
        Contract::MonitoringDecision => "MonitoringDecision",
        Contract::ChangelogRecord => "ChangelogRecord",
    }
}

/// Bytes as text when they are UTF-8, else base64 under another key.
fn bytes_field(out: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    use base64::Engine as _;
    match bytes {
        None => {
            out.insert(name.to_owned(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => {
                out.insert(name.to_owned(), Value::from(text));
            }
            Err(_) => {
                out.insert(
                    format!("{name}_base64"),
                    Value::from(base64::engine::general_purpose::STANDARD.encode(b)),
                );
            }
        },
    }
}

/// One record as a JSON object.
fn line(decoders: &Decoders, message: &BorrowedMessage<'_>) -> Value {
    let mut out = Map::new();
    out.insert("topic".into(), Value::from(message.topic()));
    out.insert("partition".into(), Value::from(message.partition()));
    out.insert("offset".into(), Value::from(message.offset()));
    out.insert(
        "timestamp".into(),
        message
            .timestamp()
            .to_millis()
            .map_or(Value::Null, Value::from),
    );
    bytes_field(&mut out, "key", message.key());
    if let Some(headers) = message.headers() {
        let mut shown = Map::new();
        for header in headers.iter() {
            let mut one = Map::new();
            bytes_field(&mut one, "v", header.value);
            let value = one.into_iter().next().map_or(Value::Null, |(k, v)| {
                if k == "v" {
                    v
                } else {
                    json!({ "base64": v })
                }
            });
            shown.insert(header.key.to_owned(), value);
        }
        out.insert("headers".into(), Value::Object(shown));
    }
    match message.payload() {
        None => {
            out.insert("value".into(), Value::Null);
        }
        Some(bytes) => match decoders.decode(bytes) {
            Ok((contract, value)) => {
                out.insert("type".into(), Value::from(record_name(contract)));
                out.insert("value".into(), value);
            }
            Err(why) => {
                use base64::Engine as _;
                out.insert("value_error".into(), Value::from(why));
                out.insert(
                    "value_base64".into(),
                    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)),
                );
            }
        },
    }
    Value::Object(out)
}

/// Reads `config.topic` and writes one JSON line per record to `out`;
/// returns how many were written. Without `follow` it stops at the end each
/// partition had when it started.
pub fn run(config: &TailConfig, out: &mut impl Write) -> Result<u64, TailError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in &config.kafka {
        client.set(key, value);
    }
    let consumer: BaseConsumer = client
        .set("group.id", "earlykill-tail")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(kafka("create the consumer"))?;
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), config.timeout)
        .map_err(|e| {
            match crate::kafka::Unreachable::from_error(
                &config.bootstrap_servers,
                config.timeout,
                e,
            ) {
                Ok(unreachable) => TailError::from(unreachable),
                Err(e) => kafka("read the topic's metadata")(e),
            }
        })?;
    let existing: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if existing.is_empty() {
        return Err(TailError::NoSuch(format!(
            "topic {:?} does not exist (or has no partitions)",
            config.topic
        )));
    }
    let partitions: Vec<i32> = if config.partitions.is_empty() {
        existing.clone()
    } else {
        if let Some(p) = config.partitions.iter().find(|p| !existing.contains(p)) {
            return Err(TailError::NoSuch(format!(
                "topic {:?} has no partition {p} (it has {existing:?})",
                config.topic
            )));
        }
        config.partitions.clone()
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&config.topic, p, config.timeout)
            .map_err(kafka("read the topic's offsets"))?;
        let start = match config.from {
            Start::Beginning => low,
            Start::End => high,
            Start::Offset(o) => o.clamp(low, high),
            Start::Last(n) => (high - n).max(low),
        };
        if start < high || config.follow {
            ends.insert(p, high);
            assignment
                .add_partition_offset(&config.topic, p, Offset::Offset(start))
                .map_err(kafka("assign the partitions"))?;
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(kafka("assign the partitions"))?;
    let mut decoders = Decoders::new(&config.schemas);
    let mut written = 0u64;
    let mut quiet_since = Instant::now();
    loop {
        if config.max.is_some_and(|max| written >= max) {
            break;
        }
        if !config.follow && ends.is_empty() {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                quiet_since = Instant::now();
                let p = message.partition();
                if !config.follow {
                    match ends.get(&p) {
                        Some(&end) if message.offset() < end => {}
                        _ => continue,
                    }
                    if message.offset() + 1 >= ends[&p] {
                        ends.remove(&p);
                    }
                }
                if let (Some(registry), Some(id)) = (
                    &config.registry,
                    message
                        .payload()
                        .and_then(earlykill_core::event::codec::registry_id),
                ) {
                    if !decoders.0.iter().any(|d| d.knows_id(id)) {
                        if let Err(why) = decoders.learn(registry, id) {
                            tracing::warn!(id, %why, "schema registry id not usable");
                        }
                    }
                }
                serde_json::to_writer(&mut *out, &line(&decoders, &message))
                    .map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // Committed records end before the end listed when control
                // records (transaction markers) close a partition.
                if !config.follow {
                    ends.remove(&p);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            None => {
                if !config.follow && quiet_since.elapsed() > config.timeout {
                    tracing::warn!(
                        partitions = ?ends.keys().collect::<Vec<_>>(),
                        "nothing more arrived; stopping before the listed end"
                    );
                    break;
                }
            }
        }
        out.flush()?;
    }
    Ok(written)
}
