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
/// defect caught by `tests/core/contract.rs`, never an input-dependent path.
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
            LazyLock::new(|| parse(include_str!(concat!("../../../../schemas/", $file))));
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
                "../../../../schemas/history/changelog_record.v1.avsc"
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

/// Extra writer schemas read from a directory (`--schema-dir`): each
/// `.avsc` file is a version of one of the contract's record types, told by
/// its full name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterSchemas(pub Vec<(Contract, std::path::PathBuf, String)>);

impl WriterSchemas {
    /// Reads every `*.avsc` file in `dir` (not its subdirectories) and
    /// checks that each is a version of a contract record type that this
    /// build can read. The error names the file and what is wrong.
    pub fn load(dir: &std::path::Path) -> Result<WriterSchemas, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut paths: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
            .collect();
        paths.sort();
        let mut schemas = Vec::new();
        for path in paths {
            let json = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let parsed = apache_avro::Schema::parse_str(&json)
                .map_err(|e| format!("{} is not an Avro schema: {e}", path.display()))?;
            let name = parsed.name().map(|n| n.fullname(None));
            let Some(contract) = Contract::ALL
                .into_iter()
                .find(|c| c.reference().name().map(|n| n.fullname(None)) == name)
            else {
                return Err(format!(
                    "{} defines {}, which is none of earlykill's record types ({})",
                    path.display(),
                    name.unwrap_or_else(|| "an unnamed schema".into()),
                    Contract::ALL
                        .iter()
                        .filter_map(|c| c.reference().name().map(|n| n.fullname(None)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            crate::event::Decoder::new(contract)
                .register_writer_schema(&json)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            schemas.push((contract, path, json));
        }
        Ok(WriterSchemas(schemas))
    }

    /// A decoder for `contract` that also accepts these schemas' versions
    /// of it.
    pub fn decoder(&self, contract: Contract) -> crate::event::Decoder {
        let mut decoder = crate::event::Decoder::new(contract);
        for (c, _, json) in &self.0 {
            if *c == contract {
                // Checked in `load`.
                let _ = decoder.register_writer_schema(json);
            }
        }
        decoder
    }
}
