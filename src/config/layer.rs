//! How a subcommand's settings are declared, once: the `layer!` macro
//! makes each field a flag (clap), an environment variable (clap's `env`),
//! a file key (serde, kebab-case) and, when it has one, a default, which
//! `--help` shows beside the flag.
//!
//! A layer has every field optional: `None` means "not set here". Layers
//! stack with `or` (the upper one wins field by field; librdkafka
//! properties merge key by key), and `with_defaults` fills what is still
//! unset, giving the `…Values` struct in which a field with a default is a
//! plain value. The subcommand's `resolve` then checks every value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ConfigError;

/// One librdkafka property, `key=value`. Its debug output hides the value
/// of a secret (a password, a client secret, a private key).
#[derive(Clone, PartialEq, Eq)]
pub struct Property(pub String, pub String);

impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if super::is_secret_property(&self.0) {
            "***"
        } else {
            &self.1
        };
        write!(f, "{}={value}", self.0)
    }
}

/// The file's `[kafka]` table as properties. A value may be a string, a
/// number or a boolean (`"linger.ms" = 5`); librdkafka takes each as text.
pub fn kafka_table<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Property>>, D::Error> {
    use serde::de::Error;
    let table: BTreeMap<String, toml::Value> = serde::Deserialize::deserialize(deserializer)?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(D::Error::custom(format!(
                        "kafka property `{key}` is a {}; give a string, a number or a boolean",
                        other.type_str()
                    )))
                }
            };
            Ok(Property(key, text))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// librdkafka properties from `EARLYKILL_RDKAFKA_*` variables:
/// `EARLYKILL_RDKAFKA_SASL_USERNAME=x` is `sasl.username=x`.
pub fn env_properties(vars: impl IntoIterator<Item = (String, String)>) -> Option<Vec<Property>> {
    let properties: Vec<Property> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("EARLYKILL_RDKAFKA_")?;
            Some(Property(name.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect();
    (!properties.is_empty()).then_some(properties)
}

/// How two layers' values of one field combine: the upper one wins, except
/// for librdkafka properties, which merge key by key.
pub trait Merge: Sized {
    /// `upper` over `lower`.
    fn merge(upper: Option<Self>, lower: Option<Self>) -> Option<Self> {
        upper.or(lower)
    }
}

macro_rules! replaced {
    ($($ty:ty),*) => { $( impl Merge for $ty {} )* };
}
replaced!(String, PathBuf, bool, f64, u16, u32, u64, usize, i32);

impl Merge for Vec<Property> {
    fn merge(upper: Option<Self>, lower: Option<Self>) -> Option<Self> {
        match (upper, lower) {
            (Some(upper), Some(mut lower)) => {
                lower.extend(upper);
                Some(lower)
            }
            (upper, lower) => upper.or(lower),
        }
    }
}

/// What every layer can say of itself.
pub trait Layer: DeserializeOwned + Default {
    /// The file keys of this layer.
    fn keys() -> Vec<String>;
}

/// How a default is shown in `--help`: as it is typed on the command line.
pub trait HelpValue {
    /// The text after `default: `.
    fn help_value(&self) -> String;
}

macro_rules! shown {
    ($($ty:ty),*) => {
        $( impl HelpValue for $ty {
            fn help_value(&self) -> String {
                self.to_string()
            }
        } )*
    };
}
shown!(String, bool, f64, u16, u32, u64, usize, i32);

/// A value of a clap `ValueEnum`, shown by its command-line name.
pub fn value_enum_name<T: clap::ValueEnum>(value: &T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// A layer's field type once defaults are applied: the value itself when
/// the field has a default, else still optional.
macro_rules! value_type {
    ($ty:ty) => { Option<$ty> };
    ($ty:ty, $default:expr) => { $ty };
}

/// A field with its default applied, if it has one.
macro_rules! with_default {
    ($value:expr) => {
        $value
    };
    ($value:expr, $default:expr) => {
        $value.unwrap_or_else(|| $default)
    };
}

/// Declares one subcommand's settings: the layer struct `$layer` (clap
/// arguments, file keys) and `$values`, the same with defaults applied.
/// A field reads `name: Type = default,` or, with no default, `name:
/// Type,`; its doc comment is the flag's help.
macro_rules! layer {
    (
        $(#[$meta:meta])*
        pub struct $layer:ident => $values:ident {
            $(
                $(#[$field_meta:meta])*
                $name:ident : $ty:ty $(= $default:expr)?,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Default, Clone, clap::Args, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $layer {
            $( $(#[$field_meta])* pub $name: Option<$ty>, )*
        }

        #[doc = concat!("[`", stringify!($layer), "`] with its defaults applied: a field with a default holds its value, one without stays optional. Each field is documented on the layer.")]
        #[allow(missing_docs)]
        #[derive(Debug, Clone)]
        pub struct $values {
            $( pub $name: $crate::config::layer::value_type!($ty $(, $default)?), )*
        }

        impl $layer {
            /// This layer over `lower`: a field set here wins.
            pub fn or(self, lower: Self) -> Self {
                Self {
                    $( $name: $crate::config::layer::Merge::merge(self.$name, lower.$name), )*
                }
            }

            /// Fills the fields still unset with their defaults.
            pub fn with_defaults(self) -> $values {
                $values {
                    $( $name: $crate::config::layer::with_default!(self.$name $(, $default)?), )*
                }
            }

            /// Each default as `--help` shows it, by argument id.
            pub fn help_defaults() -> Vec<(&'static str, String)> {
                vec![$( $( (
                    stringify!($name),
                    $crate::config::layer::HelpValue::help_value(&$default),
                ), )? )*]
            }

            /// Reads a TOML file of this layer's keys only.
            pub fn from_file(path: &std::path::Path) -> Result<Self, $crate::config::ConfigError> {
                let mut file = $crate::config::layer::File::read(path)?;
                let layer = file.take::<Self>()?;
                file.finish()?;
                Ok(layer)
            }
        }

        impl $crate::config::layer::Layer for $layer {
            fn keys() -> Vec<String> {
                vec![$( stringify!($name).replace('_', "-") ),*]
            }
        }

        /// Secrets (a token, a database URL, librdkafka passwords) show as
        /// `***`.
        impl std::fmt::Debug for $layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct(stringify!($layer));
                $(
                    if $crate::config::SECRET_SETTINGS.contains(&stringify!($name)) {
                        d.field(stringify!($name), &self.$name.as_ref().map(|_| "***"));
                    } else {
                        d.field(stringify!($name), &self.$name);
                    }
                )*
                d.finish()
            }
        }
    };
}

pub(crate) use {layer, value_type, with_default};

/// A configuration file, read once and taken apart by the layers of one
/// subcommand; a key no layer takes is an error naming it.
pub struct File {
    path: PathBuf,
    table: toml::Table,
    /// The keys the layers taken so far know, for "did you mean".
    known: Vec<String>,
}

impl File {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<File, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(File {
            path: path.to_owned(),
            table,
            known: Vec::new(),
        })
    }

    /// Reads `path` if given, as the layers of one subcommand: an empty
    /// file when `None`.
    pub fn maybe(path: Option<&Path>) -> Result<File, ConfigError> {
        match path {
            Some(path) => File::read(path),
            None => Ok(File {
                path: PathBuf::new(),
                table: toml::Table::new(),
                known: Vec::new(),
            }),
        }
    }

    /// Takes out the keys of layer `L` and reads them as one.
    pub fn take<L: Layer>(&mut self) -> Result<L, ConfigError> {
        let keys = L::keys();
        self.known.extend(keys.iter().cloned());
        let mine: toml::Table = keys
            .into_iter()
            .filter_map(|key| self.table.remove(&key).map(|v| (key, v)))
            .collect();
        toml::Value::Table(mine)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: self.path.clone(),
                message: e.to_string().trim_end().replace('\n', " "),
            })
    }

    /// Fails on the first key no layer took, suggesting the known key it
    /// is closest to (as clap does for a misspelt flag).
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => {
                let near = self
                    .known
                    .iter()
                    .map(|k| (strsim::levenshtein(key, k), k))
                    .filter(|(d, _)| *d <= (key.len() / 3).max(2))
                    .min();
                let hint = match near {
                    Some((_, k)) => format!("did you mean `{k}`? "),
                    None => String::new(),
                };
                Err(ConfigError::Parse {
                    path: self.path,
                    message: format!(
                        "unknown key `{key}`; {hint}the keys are the long flags this subcommand's --help lists"
                    ),
                })
            }
        }
    }
}
