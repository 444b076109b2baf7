//! From one input record to a fold input, or to the reason it is a dead
//! letter. This is the single place that decides what counts as bad input:
//! the processor sends every [`Rejection`] to the dead-letter topic with its
//! kind and message, unchanged, and never passes it to the fold.

use super::codec::{CodecError, Decoder};
use super::validate::{self, Limits, ValidationError};
use super::{Contract, Interaction, Millis, StopMonitoring, VariantPosted};

/// The input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputTopic {
    /// VariantPosted records.
    Posted,
    /// Interaction records.
    Interactions,
    /// StopMonitoring (and later) commands.
    Commands,
}

impl InputTopic {
    /// Every input topic.
    pub const ALL: [InputTopic; 3] = [Self::Posted, Self::Interactions, Self::Commands];

    /// The record type the topic carries.
    pub fn contract(self) -> Contract {
        match self {
            Self::Posted => Contract::VariantPosted,
            Self::Interactions => Contract::Interaction,
            Self::Commands => Contract::StopMonitoring,
        }
    }
}

/// A decoded, validated input record, borrowing from the record's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// From the posted topic.
    Posted(VariantPosted<'a>),
    /// From the interactions topic.
    Interaction(Interaction<'a>),
    /// From the commands topic.
    Stop(StopMonitoring<'a>),
}

impl Decoded<'_> {
    /// The same record, owning its strings: kept after the record's bytes
    /// are gone, without decoding it again.
    pub fn into_owned(self) -> Decoded<'static> {
        match self {
            Decoded::Posted(p) => Decoded::Posted(p.into_owned()),
            Decoded::Interaction(i) => Decoded::Interaction(i.into_owned()),
            Decoded::Stop(s) => Decoded::Stop(s.into_owned()),
        }
    }

    /// The variant the record is about.
    pub fn variant_id(&self) -> &str {
        match self {
            Decoded::Posted(p) => &p.variant_id,
            Decoded::Interaction(i) => &i.variant_id,
            Decoded::Stop(s) => &s.variant_id,
        }
    }
}

/// Why a record is a dead letter: a short machine-readable kind (a Kafka
/// header and a metric label) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Rejection {
    /// Short machine-readable reason, e.g. `key_mismatch`.
    pub kind: &'static str,
    /// What is wrong, naming the field.
    pub message: String,
}

impl Rejection {
    /// Every kind a rejection of input can have (the README lists them).
    pub const KINDS: [&'static str; 14] = [
        "empty_value",
        "truncated",
        "bad_marker",
        "unknown_schema",
        "unknown_schema_id",
        "malformed",
        "empty_field",
        "oversized_field",
        "out_of_range",
        "future_timestamp",
        "control_character",
        "key_mismatch",
        "missing_key",
        "session_limit",
    ];

    /// The kinds a record of `topic` can be rejected with: every kind but
    /// `session_limit`, which only a post can meet.
    pub fn kinds_of(topic: InputTopic) -> impl Iterator<Item = &'static str> {
        Self::KINDS
            .into_iter()
            .filter(move |kind| *kind != "session_limit" || topic == InputTopic::Posted)
    }

    /// A VariantPosted refused because its partition already remembers
    /// `max-sessions` sessions.
    pub fn session_limit(max_sessions: usize) -> Rejection {
        Rejection {
            kind: "session_limit",
            message: format!(
                "the partition already remembers {max_sessions} sessions (max-sessions); \
                 no session was started for this post"
            ),
        }
    }
}

impl From<CodecError> for Rejection {
    fn from(e: CodecError) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<ValidationError> for Rejection {
    fn from(e: ValidationError) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// One decoder per input topic, each accepting the bundled schema and any
/// writer schema registered with it.
pub struct InputDecoders {
    posted: Decoder,
    interactions: Decoder,
    commands: Decoder,
    /// Registry ids found unusable, per topic, with why: their records are
    /// dead letters without asking the registry again.
    refused: Vec<(InputTopic, u32, String)>,
}

impl Default for InputDecoders {
    fn default() -> Self {
        Self {
            posted: Decoder::new(Contract::VariantPosted),
            interactions: Decoder::new(Contract::Interaction),
            commands: Decoder::new(Contract::StopMonitoring),
            refused: Vec::new(),
        }
    }
}

impl InputDecoders {
    /// Decoders that also accept the writer schemas of `extra`.
    pub fn with(extra: &super::schema::WriterSchemas) -> Self {
        Self {
            posted: extra.decoder(Contract::VariantPosted),
            interactions: extra.decoder(Contract::Interaction),
            commands: extra.decoder(Contract::StopMonitoring),
            refused: Vec::new(),
        }
    }

    /// Remembers that registry id `id` cannot be used on `topic`, and why.
    pub fn refuse(&mut self, topic: InputTopic, id: u32, why: String) {
        self.refused.push((topic, id, why));
    }

    /// Why `value`'s registry id was refused on `topic`, if it was.
    pub fn refusal(&self, topic: InputTopic, value: Option<&[u8]>) -> Option<&str> {
        let id = super::codec::registry_id(value?)?;
        self.refused
            .iter()
            .find(|(t, i, _)| *t == topic && *i == id)
            .map(|(_, _, why)| why.as_str())
    }

    /// The schema registry id of `value` when it is registry framed with an
    /// id `topic`'s decoder does not know yet.
    pub fn unknown_registry_id(&self, topic: InputTopic, value: Option<&[u8]>) -> Option<u32> {
        let id = super::codec::registry_id(value?)?;
        (!self.decoder(topic).knows_id(id)).then_some(id)
    }

    fn decoder(&self, topic: InputTopic) -> &Decoder {
        match topic {
            InputTopic::Posted => &self.posted,
            InputTopic::Interactions => &self.interactions,
            InputTopic::Commands => &self.commands,
        }
    }

    /// The decoder of one topic, to register other writer schemas with.
    pub fn decoder_mut(&mut self, topic: InputTopic) -> &mut Decoder {
        match topic {
            InputTopic::Posted => &mut self.posted,
            InputTopic::Interactions => &mut self.interactions,
            InputTopic::Commands => &mut self.commands,
        }
    }

    /// Decodes and validates one record. `key` is the Kafka key, which must
    /// be the record's variant_id: a record keyed otherwise lands in another
    /// partition than its variant's state. `now` is the wall clock, for the
    /// future-timestamp limit.
    pub fn decode<'a>(
        &self,
        topic: InputTopic,
        key: Option<&[u8]>,
        value: Option<&'a [u8]>,
        limits: &Limits,
        now: Millis,
    ) -> Result<Decoded<'a>, Rejection> {
        let value = value.ok_or_else(|| Rejection {
            kind: "empty_value",
            message: "record has no value (a tombstone on an input topic)".to_owned(),
        })?;
        let decoded = match topic {
            InputTopic::Posted => {
                let event: VariantPosted = self.posted.decode(value)?;
                validate::posted(&event, limits, now)?;
                Decoded::Posted(event)
            }
            InputTopic::Interactions => {
                let event: Interaction = self.interactions.decode(value)?;
                validate::interaction(&event, limits, now)?;
                Decoded::Interaction(event)
            }
            InputTopic::Commands => {
                let command: StopMonitoring = self.commands.decode(value)?;
                validate::stop(&command, limits, now)?;
                Decoded::Stop(command)
            }
        };
        match key {
            Some(key) if key == decoded.variant_id().as_bytes() => Ok(decoded),
            Some(key) => Err(Rejection {
                kind: "key_mismatch",
                message: format!(
                    "record key {} is not its variant_id {:?}; producers must key by variant_id",
                    shown_key(key),
                    decoded.variant_id()
                ),
            }),
            None => Err(Rejection {
                kind: "missing_key",
                message: format!(
                    "record has no key; producers must key by variant_id ({:?})",
                    decoded.variant_id()
                ),
            }),
        }
    }
}

/// A key for an error message: at most 64 bytes of it, escaped, with its
/// length when cut, so a huge key never makes a huge message.
fn shown_key(key: &[u8]) -> String {
    const SHOWN: usize = 64;
    if key.len() <= SHOWN {
        format!("{:?}", String::from_utf8_lossy(key))
    } else {
        format!(
            "{:?}... ({} bytes)",
            String::from_utf8_lossy(&key[..SHOWN]),
            key.len()
        )
    }
}
