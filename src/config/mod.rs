//! One configuration system for every subcommand: built-in defaults, then
//! a TOML file (`--config`), then environment variables, then command-line
//! flags, each layer overriding the one before. A file key is its flag's
//! long name (`kill-threshold = 0.4`), so a setting has one name
//! everywhere; librdkafka properties go in the file's `[kafka]` table, in
//! `EARLYKILL_RDKAFKA_*` variables or in `-X key=value` flags and pass
//! through unchanged (SASL and TLS included).
//!
//! - [`layer`] — the `layer!` macro that declares a subcommand's settings
//!   once: each field is a flag, an environment variable, a file key and a
//!   default, which `--help` shows.
//! - [`processor`] — `earlykill run` ([`Settings`], resolved into
//!   [`crate::processor::ProcessorConfig`]).
//! - [`projector`] — `earlykill project`, `replay` and `migrate`.
//! - [`tools`] — `earlykill generate` and `tail`, and the traffic knobs
//!   `demo` shares (the demo's own settings are in [`crate::demo`]).
//!
//! Each subcommand's settings resolve into the configuration its component
//! owns (with the component's defaults), checking every value: an error
//! names the key and how to fix it, so a bad configuration fails at
//! start-up. This module sits above the components and below the command
//! line: nothing in a component imports it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use earlykill_core::event::schema::WriterSchemas;

pub mod layer;
pub mod processor;
pub mod projector;
pub mod tools;

pub use crate::kafka::{is_secret_property, producer_properties, Redacted};
pub use crate::secret::Secret;
pub use layer::Property;
pub use processor::*;

/// A setting that cannot be used, naming the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range, or a combination that cannot work.
    #[error("configuration key `{key}`: {problem}; {fix}")]
    Invalid {
        /// The key (the flag's long name, the file key).
        key: &'static str,
        /// What is wrong with the value.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// A librdkafka property earlykill sets itself.
    #[error("Kafka property `{property}` is managed by earlykill; {fix}")]
    ReservedProperty {
        /// The property.
        property: String,
        /// What to set instead.
        fix: &'static str,
    },
    /// The configuration file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has an unknown key.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key or line.
        message: String,
    },
}

/// Settings whose values are secrets, in every subcommand.
pub(crate) const SECRET_SETTINGS: [&str; 3] =
    ["http_token", "database_url", "schema_registry_basic_auth"];

/// Parses a `-X key=value` librdkafka property.
pub fn parse_property(s: &str) -> Result<Property, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Property(k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The librdkafka properties of a resolved layer: `-X` flags over
/// `EARLYKILL_RDKAFKA_*` variables over the file's `[kafka]` table, the
/// later one winning for a key set twice. A property earlykill sets itself
/// (`reserved` says which, and what to use instead) is refused.
pub fn kafka_properties(
    layered: Option<Vec<Property>>,
    reserved: fn(&str) -> Option<&'static str>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let kafka: BTreeMap<String, String> = layered
        .unwrap_or_default()
        .into_iter()
        .map(|Property(k, v)| (k, v))
        .collect();
    if let Some((property, fix)) = kafka.keys().find_map(|k| reserved(k).map(|fix| (k, fix))) {
        return Err(ConfigError::ReservedProperty {
            property: property.clone(),
            fix,
        });
    }
    // librdkafka checks each name and value as it is set: an unknown
    // property or a bad value fails here, before anything starts.
    for (key, value) in &kafka {
        let mut one = rdkafka::ClientConfig::new();
        one.set(key, value);
        if let Err(e) = one.create_native_config() {
            // librdkafka's message repeats the value: never a secret's.
            let (shown, reason) = if is_secret_property(key) {
                (
                    "***".to_owned(),
                    e.to_string().replace(value.as_str(), "***"),
                )
            } else {
                (format!("{value:?}"), e.to_string())
            };
            return Err(invalid(
                "kafka-property",
                format!("{key} = {shown}: {reason}"),
                "check the name and value against librdkafka's CONFIGURATION.md (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)",
            ));
        }
    }
    Ok(kafka)
}

/// `http-listen`: `host:port`, or `off` for no listener. `port` is the
/// subcommand's default port, for the example in the fix.
pub(crate) fn listen_address(value: &str, port: u16) -> Result<Option<SocketAddr>, ConfigError> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        invalid(
            "http-listen",
            format!("{value:?} is not host:port"),
            &format!("use an address such as 0.0.0.0:{port} (all interfaces) or 127.0.0.1:{port}, or off"),
        )
    })
}

/// `log-level`: a level name of the seeds or a tracing filter.
pub(crate) fn log_filter(value: &str) -> Result<String, ConfigError> {
    crate::telemetry::log_filter(value).map_err(|problem| {
        invalid(
            "log-level",
            problem,
            "use trace, debug, info, warning, error or critical, or a filter such as earlykill=debug,rdkafka=warn",
        )
    })
}

/// `schema-dir`: the extra writer schemas, each checked against this
/// build's.
pub(crate) fn writer_schemas(dir: Option<&Path>) -> Result<WriterSchemas, ConfigError> {
    match dir {
        None => Ok(WriterSchemas::default()),
        Some(dir) => WriterSchemas::load(dir).map_err(|problem| {
            invalid(
                "schema-dir",
                problem,
                "fix or remove that file: each must be a version of VariantPosted, Interaction, StopMonitoring, MonitoringDecision or ChangelogRecord that adds or removes fields with defaults",
            )
        }),
    }
}

/// `schema-registry-url`, `-basic-auth` and `-ca`: the registry client, if
/// a URL is given.
pub(crate) fn registry(
    url: Option<&str>,
    basic_auth: Option<&str>,
    ca: Option<&Path>,
) -> Result<Option<crate::registry::Registry>, ConfigError> {
    crate::registry::Registry::from_settings(url, basic_auth, ca).map_err(|problem| {
        invalid(
            "schema-registry-url",
            problem,
            "give the registry's URL, e.g. https://registry:8081, and a readable schema-registry-ca",
        )
    })
}

pub(crate) fn millis(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn invalid(key: &'static str, problem: String, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem,
        fix: fix.to_owned(),
    }
}
