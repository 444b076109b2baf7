//! Reading the decisions topic: single-object records, and records framed
//! for the Confluent Schema Registry (`--decisions-format registry`), whose
//! writer schema is fetched by id once and kept.

use std::time::Duration;

use crate::registry::{Registry, RegistryError};
use earlykill_core::event::codec::registry_id;
use earlykill_core::event::{Contract, Decoder, MonitoringDecision};

/// Attempts at the registry before giving up; waits double from 100 ms.
const REGISTRY_ATTEMPTS: u32 = 6;

/// Why a record of the decisions topic gives no decision.
#[derive(Debug)]
pub enum Unreadable {
    /// The record is not a decision (logged and skipped, as before).
    Skip(String),
    /// The registry could not be asked for the record's schema: the record
    /// must not be skipped; the projector stops and reads it again.
    Registry(RegistryError),
}

/// The decoder of the decisions topic, with the registry when one is set.
pub struct DecisionReader {
    decoder: Decoder,
    registry: Option<Registry>,
}

impl DecisionReader {
    /// A reader; `registry` resolves registry-framed records.
    pub fn new(registry: Option<Registry>) -> Self {
        DecisionReader {
            decoder: Decoder::new(Contract::MonitoringDecision),
            registry,
        }
    }

    /// The decision in `bytes`.
    pub fn read(&mut self, bytes: &[u8]) -> Result<MonitoringDecision, Unreadable> {
        if let (Some(id), Some(registry)) = (registry_id(bytes), &self.registry) {
            if !self.decoder.knows_id(id) {
                let json = fetch(registry, id)?;
                self.decoder
                    .register_registry_schema(id, &json)
                    .map_err(|e| Unreadable::Skip(format!("schema registry id {id}: {e}")))?;
                tracing::info!(id, "decision schema fetched from the schema registry");
            }
        }
        self.decoder
            .decode::<MonitoringDecision>(bytes)
            .map_err(|e| Unreadable::Skip(e.to_string()))
    }
}

/// The schema of `id`, asking again while the registry is unavailable.
fn fetch(registry: &Registry, id: u32) -> Result<String, Unreadable> {
    let mut retry = crate::backoff::policy(
        Duration::from_millis(100),
        Duration::from_secs(5),
        Some(REGISTRY_ATTEMPTS as usize),
    );
    for attempt in 1..=REGISTRY_ATTEMPTS {
        match registry.schema(id) {
            Ok(json) => return Ok(json),
            Err(e @ RegistryError::Unavailable { .. }) if attempt < REGISTRY_ATTEMPTS => {
                tracing::warn!(id, attempt, error = %e, "schema registry unavailable; asking again");
                let (_, wait) = retry.after_failure().unwrap_or_default();
                std::thread::sleep(wait);
            }
            Err(e @ RegistryError::Unavailable { .. }) => return Err(Unreadable::Registry(e)),
            Err(e) => return Err(Unreadable::Skip(e.to_string())),
        }
    }
    unreachable!("the last attempt returns")
}
