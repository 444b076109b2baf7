//! The schema table: every `.avsc` file in `schemas/`, compiled into the
//! binary with `include_str!`, parsed once, in both the reference
//! implementation (apache-avro, the oracle) and the fast codec
//! (serde_avro_fast, which encodes and decodes on the hot path).

use std::sync::LazyLock;

/// One record type of the public contract, i.e. one file in `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `variant_posted.avsc`, the posted topic.
    VariantPosted,
    /// `interaction.avsc`, the interactions topic.
    Interaction,
    /// `stop_monitoring.avsc`, the commands topic.
    StopMonitoring,
    /// `monitoring_decision.avsc`, the decisions topic.
    MonitoringDecision,
    /// `changelog_record.avsc`, the state changelog topic.
    ChangelogRecord,
}

struct Parsed {
    reference: apache_avro::Schema,
    fast: serde_avro_fast::Schema,
}

/// Parses a schema that ships in the binary; a failure here is a build
/// defect caught by `tests/contract.rs`, never an input-dependent path.
fn parse(json: &'static str) -> Parsed {
    let reference = apache_avro::Schema::parse_str(json)
        .unwrap_or_else(|e| panic!("bundled schema does not parse in apache-avro: {e}"));
    let fast = json
        .parse()
        .unwrap_or_else(|e| panic!("bundled schema does not parse in serde_avro_fast: {e}"));
    Parsed { reference, fast }
}

macro_rules! bundled {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Parsed> =
            LazyLock::new(|| parse(include_str!(concat!("../../schemas/", $file))));
    };
}

bundled!(VARIANT_POSTED, "variant_posted.avsc");
bundled!(INTERACTION, "interaction.avsc");
bundled!(STOP_MONITORING, "stop_monitoring.avsc");
bundled!(MONITORING_DECISION, "monitoring_decision.avsc");
bundled!(CHANGELOG_RECORD, "changelog_record.avsc");

impl Contract {
    /// Every record type of the contract.
    pub const ALL: [Contract; 5] = [
        Self::VariantPosted,
        Self::Interaction,
        Self::StopMonitoring,
        Self::MonitoringDecision,
        Self::ChangelogRecord,
    ];

    /// File name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::VariantPosted => "variant_posted.avsc",
            Self::Interaction => "interaction.avsc",
            Self::StopMonitoring => "stop_monitoring.avsc",
            Self::MonitoringDecision => "monitoring_decision.avsc",
            Self::ChangelogRecord => "changelog_record.avsc",
        }
    }

    /// Earlier versions of the schema that this build wrote, oldest first,
    /// from `schemas/history/`: every [`crate::event::Decoder`] accepts
    /// them, so an upgrade restores the state an older release wrote.
    pub fn history(self) -> &'static [&'static str] {
        match self {
            Self::ChangelogRecord => &[include_str!(
                "../../schemas/history/changelog_record.v1.avsc"
            )],
            _ => &[],
        }
    }

    /// The schema's JSON exactly as shipped.
    pub fn json(self) -> &'static str {
        self.fast().json()
    }

    fn parsed(self) -> &'static Parsed {
        match self {
            Self::VariantPosted => &VARIANT_POSTED,
            Self::Interaction => &INTERACTION,
            Self::StopMonitoring => &STOP_MONITORING,
            Self::MonitoringDecision => &MONITORING_DECISION,
            Self::ChangelogRecord => &CHANGELOG_RECORD,
        }
    }

    /// The schema in apache-avro, the reference implementation.
    pub fn reference(self) -> &'static apache_avro::Schema {
        &self.parsed().reference
    }

    /// The schema in serde_avro_fast, the hot-path decoder.
    pub fn fast(self) -> &'static serde_avro_fast::Schema {
        &self.parsed().fast
    }

    /// CRC-64-AVRO (Rabin) fingerprint of the schema's parsing canonical
    /// form, little-endian, as written in a single-object encoding header.
    pub fn fingerprint(self) -> [u8; 8] {
        *self.fast().rabin_fingerprint()
    }
}
