//! Intake: one input record decoded and validated, or turned into a dead
//! letter with the reason. Writer schemas the record names by a schema
//! registry id are fetched here, once per id.

use super::broker::Inbound;
use super::ProcessorConfig;
use crate::registry::{Registry, RegistryError};
use earlykill_core::event::{Decoded, InputDecoders, InputTopic, Millis, Rejection};
use earlykill_core::monitor::{Input, Outcome};

/// A rejected input record, on its way to the dead-letter topic.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub rejection: Rejection,
    pub partition: i32,
    pub offset: i64,
}

impl DeadLetter {
    /// `record`, copied whole (headers too), refused for `rejection`.
    pub fn of(record: &impl Inbound, rejection: Rejection) -> DeadLetter {
        DeadLetter {
            key: record.key().map(<[u8]>::to_vec),
            value: record.value().map(<[u8]>::to_vec),
            headers: record.headers(),
            rejection,
            partition: record.partition(),
            offset: record.offset(),
        }
    }

    /// A record that decoded but that the fold refused.
    pub fn refused(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
        offset: i64,
        rejection: Rejection,
    ) -> DeadLetter {
        DeadLetter {
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
            rejection,
            partition,
            offset,
        }
    }
}

/// Decodes and validates input records.
pub(crate) struct Intake {
    decoders: InputDecoders,
    registry: Option<Registry>,
    topics: [String; 3],
}

impl Intake {
    pub fn new(config: &ProcessorConfig) -> Intake {
        Intake {
            decoders: InputDecoders::with(&config.writer_schemas),
            registry: config.schema_registry.clone(),
            topics: InputTopic::ALL.map(|t| config.topics.input(t).to_owned()),
        }
    }

    /// The input topic named `topic`, if it is one.
    pub fn role(&self, topic: &str) -> Option<InputTopic> {
        InputTopic::ALL
            .into_iter()
            .find(|&t| self.topics[earlykill_core::merge::rank(t)] == topic)
    }

    /// Decodes and validates one record as it is read. `Ok(Err(_))` is a
    /// dead letter; `Err` means the schema registry could not be asked (the
    /// record must be read again later, never dead-lettered for an outage).
    pub fn check<'v>(
        &mut self,
        topic: InputTopic,
        key: Option<&[u8]>,
        value: Option<&'v [u8]>,
        config: &ProcessorConfig,
        now: Millis,
    ) -> Result<Result<Decoded<'v>, Rejection>, RegistryError> {
        let refused = match self.decoders.refusal(topic, value) {
            Some(why) => Some(Rejection {
                kind: "unknown_schema_id",
                message: why.to_owned(),
            }),
            None => match (
                &self.registry,
                self.decoders.unknown_registry_id(topic, value),
            ) {
                (Some(registry), Some(id)) => {
                    schema_by_id(registry, &mut self.decoders, topic, id)?
                }
                _ => None,
            },
        };
        Ok(match refused {
            Some(rejection) => Err(rejection),
            None => self.decode(topic, key, value, config, now),
        })
    }

    /// Decodes a record [`Intake::check`] accepted, when the merge
    /// releases it.
    pub fn decode<'v>(
        &self,
        topic: InputTopic,
        key: Option<&[u8]>,
        value: Option<&'v [u8]>,
        config: &ProcessorConfig,
        now: Millis,
    ) -> Result<Decoded<'v>, Rejection> {
        self.decoders.decode(topic, key, value, &config.limits, now)
    }
}

/// Fetches the writer schema of registry id `id` for `topic`'s decoder.
/// `Ok(Some(rejection))` when the registry does not have it or it is not a
/// version of the topic's record type (the record is a dead letter);
/// `Err` when the registry cannot be asked.
fn schema_by_id(
    registry: &Registry,
    decoders: &mut InputDecoders,
    topic: InputTopic,
    id: u32,
) -> Result<Option<Rejection>, RegistryError> {
    let why = match registry.schema(id) {
        Ok(json) => match decoders
            .decoder_mut(topic)
            .register_registry_schema(id, &json)
        {
            Ok(()) => {
                tracing::info!(id, ?topic, "writer schema fetched from the schema registry");
                return Ok(None);
            }
            Err(e) => format!("schema registry id {id}: {e}"),
        },
        Err(
            e @ (RegistryError::NotFound { .. }
            | RegistryError::NotAvro { .. }
            | RegistryError::Refused { .. }),
        ) => e.to_string(),
        Err(e @ RegistryError::Unavailable { .. }) => return Err(e),
    };
    tracing::warn!(id, ?topic, reason = %why, "schema registry id refused; its records are dead letters");
    decoders.refuse(topic, id, why.clone());
    Ok(Some(Rejection {
        kind: "unknown_schema_id",
        message: why,
    }))
}

/// What the shell does with an event the fold applied: a post refused for
/// the session limit becomes a dead letter (its rejection is returned); a
/// stop for a variant with no active session is logged.
pub(crate) fn after_fold(
    outcome: Outcome,
    input: Input<'_, '_>,
    max_sessions: usize,
) -> Option<Rejection> {
    match (outcome, input) {
        // Only a post can start a session, so only a post meets the limit.
        (Outcome::SessionLimit, Input::Posted(_)) => Some(Rejection::session_limit(max_sessions)),
        (Outcome::UnknownVariant | Outcome::Late, Input::Stop(stop)) => {
            tracing::warn!(
                variant_id = %stop.variant_id,
                requested_by = %stop.requested_by,
                known = outcome == Outcome::Late,
                "stop for a variant with no active session: nothing to stop"
            );
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earlykill_core::event::codec::encode;
    use earlykill_core::event::{Contract, VariantPosted};

    fn config() -> ProcessorConfig {
        ProcessorConfig::with_bootstrap("unused")
    }

    fn posted(id: &str) -> Vec<u8> {
        let post = VariantPosted {
            variant_id: id.into(),
            persona_id: "p".into(),
            post_id: "post".into(),
            posted_at: 1_000,
            expected_engagement_rate: 0.1,
            kill_threshold: None,
            min_interactions: None,
            timeout_minutes: None,
            metadata: Default::default(),
        };
        encode(Contract::VariantPosted, &post).unwrap()
    }

    #[test]
    fn the_topic_names_map_to_their_roles() {
        let config = config();
        let intake = Intake::new(&config);
        for topic in InputTopic::ALL {
            assert_eq!(intake.role(config.topics.input(topic)), Some(topic));
        }
        assert_eq!(intake.role(&config.topics.decisions), None);
    }

    #[test]
    fn a_valid_record_decodes_and_a_bad_one_is_rejected_with_its_reason() {
        let config = config();
        let mut intake = Intake::new(&config);
        let value = posted("v-1");
        let now = 2_000;
        let ok = intake.check(InputTopic::Posted, Some(b"v-1"), Some(&value), &config, now);
        assert!(matches!(ok, Ok(Ok(Decoded::Posted(_)))));
        let miskeyed = intake.check(InputTopic::Posted, Some(b"v-2"), Some(&value), &config, now);
        let rejection = miskeyed.unwrap().unwrap_err();
        assert!(rejection.message.contains("v-2"), "{}", rejection.message);
        let garbage = intake.check(
            InputTopic::Posted,
            Some(b"v-1"),
            Some(b"\x00junk"),
            &config,
            now,
        );
        assert!(garbage.unwrap().is_err());
        let tombstone = intake.check(InputTopic::Posted, Some(b"v-1"), None, &config, now);
        assert_eq!(tombstone.unwrap().unwrap_err().kind, "empty_value");
    }

    #[test]
    fn a_post_over_the_session_limit_becomes_a_dead_letter() {
        let value = posted("v-1");
        let config = config();
        let decoded = Intake::new(&config)
            .decode(
                InputTopic::Posted,
                Some(b"v-1"),
                Some(&value),
                &config,
                2_000,
            )
            .unwrap();
        let input = Input::from(&decoded);
        assert_eq!(
            after_fold(Outcome::SessionLimit, input, 7).map(|r| r.kind),
            Some(Rejection::session_limit(7).kind)
        );
        assert!(after_fold(Outcome::Counted, input, 7).is_none());
    }

    /// The fold keeps only a post's bytes (see `partition::Record`): no
    /// outcome makes an interaction or a stop a dead letter.
    #[test]
    fn only_a_post_is_ever_refused_by_the_fold() {
        use earlykill_core::event::{Interaction, InteractionKind, StopMonitoring};
        let interaction = Interaction {
            event_id: "e".into(),
            variant_id: "v".into(),
            kind: InteractionKind::Like,
            count: 1,
            occurred_at: 1,
        };
        let stop = StopMonitoring {
            variant_id: "v".into(),
            reason: "r".into(),
            requested_by: "o".into(),
            requested_at: 1,
        };
        for outcome in [
            Outcome::Started,
            Outcome::DuplicatePost,
            Outcome::Counted,
            Outcome::Killed,
            Outcome::Stopped,
            Outcome::Held,
            Outcome::HoldRefused,
            Outcome::SessionLimit,
            Outcome::Late,
            Outcome::UnknownVariant,
            Outcome::Excluded,
            Outcome::Rejected,
        ] {
            assert_eq!(
                after_fold(outcome, Input::Interaction(&interaction), 7),
                None
            );
            assert_eq!(after_fold(outcome, Input::Stop(&stop), 7), None);
        }
    }
}
