//! An unreachable cluster, said once and plainly: the address tried and the
//! setting to check, rather than librdkafka's transport error alone.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// No broker answered a first request (metadata) at `bootstrap`.
#[derive(Debug, thiserror::Error)]
#[error(
    "no Kafka broker answered at {bootstrap} within {timeout:?} ({source}); check `bootstrap-servers` \
     (EARLYKILL_BOOTSTRAP_SERVERS), and that the network, TLS and SASL settings let this host reach it"
)]
pub struct Unreachable {
    /// The bootstrap servers tried.
    pub bootstrap: String,
    /// How long it waited.
    pub timeout: Duration,
    /// librdkafka's error.
    pub source: KafkaError,
}

impl Unreachable {
    /// `error` as an unreachable cluster, when that is what it says.
    pub fn from_error(
        bootstrap: &str,
        timeout: Duration,
        error: KafkaError,
    ) -> Result<Unreachable, KafkaError> {
        let code = match &error {
            KafkaError::AdminOp(code) => Some(*code),
            other => other.rdkafka_error_code(),
        };
        let unreachable = matches!(
            code,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::Authentication
            )
        );
        if unreachable {
            Ok(Unreachable {
                bootstrap: bootstrap.to_owned(),
                timeout,
                source: error,
            })
        } else {
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_names_the_address_and_the_setting() {
        let error = KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        let said = Unreachable::from_error("10.0.0.9:9092", Duration::from_secs(30), error)
            .expect("unreachable")
            .to_string();
        assert!(
            said.contains("10.0.0.9:9092") && said.contains("`bootstrap-servers`"),
            "{said}"
        );
        let other = KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(Unreachable::from_error("x:1", Duration::from_secs(1), other).is_err());
    }
}
