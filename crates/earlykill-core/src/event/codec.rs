//! Wire format of every topic: Avro [single-object encoding]: the marker
//! `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
//! schema, then the Avro binary datum.
//!
//! The fingerprint tells a reader which version of a schema wrote the datum,
//! so a consumer keeps reading records written before or after a field was
//! added without a schema registry. Any Avro implementation can produce and
//! read this framing. Confluent Schema Registry framing (`00` + 4-byte schema
//! id) would be a second framing, resolving the id to a writer schema the same way;
//! nothing in the fold depends on which framing is used.
//!
//! Two decoders read the same bytes:
//! - [`Decoder`] (serde_avro_fast) deserialises straight from the bytes into
//!   borrowed structs, with no intermediate `Value` tree: the hot path.
//! - [`Decoder::decode_reference`] (apache-avro) builds a `Value`, resolves it against
//!   the bundled reader schema and deserialises that: the oracle the property
//!   tests compare the fast decoder with.
//!
//! Two encoders write the same bytes: [`encode`] (serde_avro_fast, the hot
//! path) and [`encode_reference`] (apache-avro, the oracle). The changelog
//! record, written once per changed session, has a third, field by field:
//! [`super::datum::encode_changelog_into`].
//!
//! [single-object encoding]: https://avro.apache.org/docs/1.11.1/specification/#single-object-encoding

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::Contract;

/// The two bytes every single-object encoded record starts with.
pub const MARKER: [u8; 2] = [0xC3, 0x01];
/// Marker plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// Why bytes could not be decoded or a value not encoded. Each variant names
/// a dead-letter reason kind via [`CodecError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Too short to hold the single-object header.
    #[error("record is {len} bytes, shorter than the 10-byte Avro single-object header")]
    Truncated {
        /// Length of the record.
        len: usize,
    },
    /// Not single-object encoded (or another framing).
    #[error("record does not start with the Avro single-object marker C3 01 (found {found:02X?})")]
    BadMarker {
        /// The first two bytes found instead.
        found: [u8; 2],
    },
    /// Confluent Schema Registry framing with a schema id this decoder has
    /// not been given (no registry configured, or the registry does not
    /// know it).
    #[error(
        "record is Confluent Schema Registry framed with schema id {id}, which is not known{hint}"
    )]
    UnknownSchemaId {
        /// The schema id in the record.
        id: u32,
        /// What to do about it.
        hint: String,
    },
    /// Written with a schema this decoder does not know.
    #[error(
        "writer schema fingerprint {fingerprint} is not a known version of {contract:?}; \
         register the writer schema or check the producer writes to the right topic"
    )]
    UnknownSchema {
        /// The record type expected on this topic.
        contract: Contract,
        /// The fingerprint in the record's header, in hex.
        fingerprint: String,
    },
    /// The header is right but the datum does not decode.
    #[error("record body is not a valid {contract:?}: {message}")]
    Malformed {
        /// The record type expected.
        contract: Contract,
        /// The decoder's explanation.
        message: String,
    },
    /// A writer schema offered for registration is unusable.
    #[error("schema does not parse or is not a version of {contract:?}: {message}")]
    Schema {
        /// The record type it should be a version of.
        contract: Contract,
        /// What is wrong with it.
        message: String,
    },
    /// A value does not fit its schema (a bug on our side, not bad input).
    #[error("cannot encode {contract:?}: {message}")]
    Encode {
        /// The record type being written.
        contract: Contract,
        /// apache-avro's explanation.
        message: String,
    },
}

impl CodecError {
    /// Short machine-readable reason, used in dead-letter headers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::BadMarker { .. } => "bad_marker",
            Self::UnknownSchema { .. } => "unknown_schema",
            Self::UnknownSchemaId { .. } => "unknown_schema_id",
            Self::Malformed { .. } => "malformed",
            Self::Schema { .. } => "bad_schema",
            Self::Encode { .. } => "encode",
        }
    }
}

/// The first byte of a Confluent Schema Registry framed record.
pub const REGISTRY_MAGIC: u8 = 0;

/// The schema id of a Confluent Schema Registry framed record (a zero byte,
/// then the id as 4 bytes big-endian), if `bytes` is one.
pub fn registry_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [REGISTRY_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Splits a single-object encoded record into its fingerprint and datum.
pub fn split_header(bytes: &[u8]) -> Result<([u8; 8], &[u8]), CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated { len: bytes.len() });
    }
    let (header, datum) = bytes.split_at(HEADER_LEN);
    if header[..2] != MARKER {
        return Err(CodecError::BadMarker {
            found: [header[0], header[1]],
        });
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&header[2..]);
    Ok((fingerprint, datum))
}

fn hex(fingerprint: &[u8; 8]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer schema the decoder accepts besides the bundled one.
struct Registered {
    fingerprint: [u8; 8],
    fast: serde_avro_fast::Schema,
    reference: apache_avro::Schema,
}

/// Hot-path decoder for one topic's record type. Accepts the bundled schema
/// and any other registered version of it (an older producer's, or a newer
/// one's), choosing by the fingerprint in each record's header.
pub struct Decoder {
    contract: Contract,
    registered: Vec<Registered>,
    /// Schema registry ids, with the fingerprint of the schema each names.
    ids: Vec<(u32, [u8; 8])>,
}

impl Decoder {
    /// A decoder that accepts records written with the bundled schema and
    /// with its earlier versions ([`Contract::history`]).
    pub fn new(contract: Contract) -> Self {
        let mut decoder = Self {
            contract,
            registered: Vec::new(),
            ids: Vec::new(),
        };
        for json in contract.history() {
            // A bundled version that does not register is a build defect,
            // caught by the contract tests.
            if let Err(e) = decoder.register_writer_schema(json) {
                panic!("bundled history schema of {contract:?} does not register: {e}");
            }
        }
        decoder
    }

    /// Accepts records written with `writer_json`, another version of the
    /// same record (same full name) that the bundled reader schema can read
    /// (Avro's schema resolution rules, checked with apache-avro's
    /// `SchemaCompatibility::can_read`). Fields the writer lacks take their
    /// defaults; fields it added are skipped.
    pub fn register_writer_schema(&mut self, writer_json: &str) -> Result<(), CodecError> {
        let schema_error = |message: String| CodecError::Schema {
            contract: self.contract,
            message,
        };
        let reference =
            apache_avro::Schema::parse_str(writer_json).map_err(|e| schema_error(e.to_string()))?;
        let bundled_name = self.contract.reference().name().map(|n| n.fullname(None));
        let writer_name = reference.name().map(|n| n.fullname(None));
        if writer_name != bundled_name {
            return Err(schema_error(format!(
                "record is named {writer_name:?}, expected {bundled_name:?}"
            )));
        }
        let comparable = apache_avro::Schema::parse_str(&with_reader_enum_symbols(
            writer_json,
            self.contract.json(),
        ))
        .map_err(|e| schema_error(e.to_string()))?;
        apache_avro::schema_compatibility::SchemaCompatibility::can_read(
            &comparable,
            self.contract.reference(),
        )
        .map_err(|e| {
            schema_error(format!(
                "records it writes cannot be read with this build's schema: {e}"
            ))
        })?;
        let fast: serde_avro_fast::Schema = writer_json
            .parse()
            .map_err(|e: serde_avro_fast::schema::SchemaError| schema_error(e.to_string()))?;
        let fingerprint = *fast.rabin_fingerprint();
        if fingerprint != self.contract.fingerprint()
            && !self.registered.iter().any(|r| r.fingerprint == fingerprint)
        {
            self.registered.push(Registered {
                fingerprint,
                fast,
                reference,
            });
        }
        Ok(())
    }

    /// Accepts Confluent Schema Registry framed records with schema `id`,
    /// whose JSON the registry gave: checked like
    /// [`Decoder::register_writer_schema`].
    pub fn register_registry_schema(&mut self, id: u32, json: &str) -> Result<(), CodecError> {
        self.register_writer_schema(json)?;
        let fingerprint = fingerprint(json).map_err(|message| CodecError::Schema {
            contract: self.contract,
            message,
        })?;
        if !self.knows_id(id) {
            self.ids.push((id, fingerprint));
        }
        Ok(())
    }

    /// Whether registry-framed records with schema `id` decode here.
    pub fn knows_id(&self, id: u32) -> bool {
        self.ids.iter().any(|(i, _)| *i == id)
    }

    /// The fingerprint of the writer schema and the datum, for either
    /// framing.
    fn frame<'b>(&self, bytes: &'b [u8]) -> Result<([u8; 8], &'b [u8]), CodecError> {
        match registry_id(bytes) {
            Some(id) => {
                let fingerprint = self
                    .ids
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, f)| *f)
                    .ok_or_else(|| CodecError::UnknownSchemaId {
                        id,
                        hint:
                            "; earlykill fetches registry schemas when --schema-registry-url is set"
                                .to_owned(),
                    })?;
                Ok((fingerprint, &bytes[5..]))
            }
            None => split_header(bytes),
        }
    }

    /// Whether records written with the schema of `fingerprint` decode
    /// here: the bundled schema, a history version or a registered one.
    pub fn knows(&self, fingerprint: &[u8; 8]) -> bool {
        self.writer(fingerprint).is_ok()
    }

    /// The record type this decoder reads.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    fn writer(
        &self,
        fingerprint: &[u8; 8],
    ) -> Result<(&serde_avro_fast::Schema, &apache_avro::Schema), CodecError> {
        if *fingerprint == self.contract.fingerprint() {
            return Ok((self.contract.fast(), self.contract.reference()));
        }
        self.registered
            .iter()
            .find(|r| r.fingerprint == *fingerprint)
            .map(|r| (&r.fast, &r.reference))
            .ok_or_else(|| CodecError::UnknownSchema {
                contract: self.contract,
                fingerprint: hex(fingerprint),
            })
    }

    /// Decodes one record, borrowing strings from `bytes` where `T` allows.
    pub fn decode<'a, T: Deserialize<'a>>(&self, bytes: &'a [u8]) -> Result<T, CodecError> {
        let (fingerprint, datum) = self.frame(bytes)?;
        let (writer, _) = self.writer(&fingerprint)?;
        serde_avro_fast::from_datum_slice(datum, writer).map_err(|e| self.malformed(e.to_string()))
    }

    /// Decodes with apache-avro: the reference the fast path is checked
    /// against. Resolves the writer schema against the bundled reader schema
    /// exactly as the Avro specification describes and returns the resolved
    /// value; `apache_avro::from_value` turns it into a (possibly borrowing)
    /// Rust type. Slow; not for the hot path.
    pub fn decode_reference_value(
        &self,
        bytes: &[u8],
    ) -> Result<apache_avro::types::Value, CodecError> {
        let (fingerprint, mut datum) = self.frame(bytes)?;
        let (_, writer) = self.writer(&fingerprint)?;
        let value =
            apache_avro::from_avro_datum(writer, &mut datum, Some(self.contract.reference()))
                .map_err(|e| self.malformed(e.to_string()))?;
        if !datum.is_empty() {
            return Err(self.malformed(format!("{} trailing bytes after the datum", datum.len())));
        }
        Ok(value)
    }

    /// [`Decoder::decode_reference_value`] into an owned Rust type.
    pub fn decode_reference<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let value = self.decode_reference_value(bytes)?;
        apache_avro::from_value(&value).map_err(|e| self.malformed(e.to_string()))
    }

    fn malformed(&self, message: String) -> CodecError {
        CodecError::Malformed {
            contract: self.contract,
            message,
        }
    }
}

/// `writer_json` with the symbols of every enum that the reader schema
/// declares with a default replaced by the reader's own: Avro resolution
/// reads a symbol the reader does not know as that default, so such enums
/// never make a writer unreadable, but apache-avro's compatibility check
/// (0.20) does not know that rule.
fn with_reader_enum_symbols(writer_json: &str, reader_json: &str) -> String {
    use serde_json::Value;
    fn enums(value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("enum")
                    && map.contains_key("default")
                {
                    if let (Some(name), Some(symbols)) =
                        (map.get("name").and_then(Value::as_str), map.get("symbols"))
                    {
                        out.push((short(name).to_owned(), symbols.clone()));
                    }
                }
                map.values().for_each(|v| enums(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| enums(v, out)),
            _ => {}
        }
    }
    fn replace(value: &mut Value, reader: &[(String, Value)]) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("enum") {
                    let name = map.get("name").and_then(Value::as_str).map(short);
                    if let Some((_, symbols)) =
                        reader.iter().find(|(n, _)| Some(n.as_str()) == name)
                    {
                        map.insert("symbols".into(), symbols.clone());
                    }
                }
                map.values_mut().for_each(|v| replace(v, reader));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace(v, reader)),
            _ => {}
        }
    }
    fn short(name: &str) -> &str {
        name.rsplit('.').next().unwrap_or(name)
    }
    let (Ok(mut writer), Ok(reader)) = (
        serde_json::from_str::<Value>(writer_json),
        serde_json::from_str::<Value>(reader_json),
    ) else {
        return writer_json.to_owned();
    };
    let mut reader_enums = Vec::new();
    enums(&reader, &mut reader_enums);
    replace(&mut writer, &reader_enums);
    writer.to_string()
}

/// Encodes `value` with the bundled schema of `contract`, appending the
/// single-object record to `out` (reuse the buffer on hot paths).
///
/// serde_avro_fast serialises straight into `out`; [`encode_reference`]
/// writes the same bytes through apache-avro's `Value` tree, about ten
/// times slower, and the contract tests check that both agree.
pub fn encode_into<T: Serialize>(
    contract: Contract,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let mut config = serde_avro_fast::ser::SerializerConfig::new(contract.fast());
    serde_avro_fast::to_single_object(value, out, &mut config)
        .map(|_| ())
        .map_err(|e| CodecError::Encode {
            contract,
            message: e.to_string(),
        })
}

/// How records are framed on a topic earlykill writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, the fingerprint, the datum.
    SingleObject,
    /// Confluent Schema Registry framing: `00`, the schema id (4 bytes big
    /// endian) under which the bundled schema is registered, the datum.
    Registry(u32),
}

/// Encodes `value` with the bundled schema of `contract`, appending the
/// record framed as `framing` says to `out`.
pub fn encode_framed_into<T: Serialize>(
    contract: Contract,
    framing: Framing,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let id = match framing {
        Framing::SingleObject => return encode_into(contract, value, out),
        Framing::Registry(id) => id,
    };
    out.push(REGISTRY_MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    let mut config = serde_avro_fast::ser::SerializerConfig::new(contract.fast());
    serde_avro_fast::to_datum(value, out, &mut config)
        .map(|_| ())
        .map_err(|e| CodecError::Encode {
            contract,
            message: e.to_string(),
        })
}

/// Encodes `value` with the bundled schema of `contract` into a new buffer.
pub fn encode<T: Serialize>(contract: Contract, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    encode_into(contract, value, &mut out)?;
    Ok(out)
}

/// Encodes `value` with apache-avro: the reference [`encode`] is checked
/// against. Slow; not for the hot path.
pub fn encode_reference<T: Serialize>(
    contract: Contract,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    encode_with_schema(
        contract.reference(),
        contract.fingerprint(),
        value,
        &mut out,
    )
    .map_err(|message| CodecError::Encode { contract, message })?;
    Ok(out)
}

/// The single-object fingerprint of a schema given as JSON.
///
/// Computed by serde_avro_fast, whose Parsing Canonical Form matches the
/// Avro specification and other implementations (fastavro, Java).
/// apache-avro 0.20 keeps `{"type":"long"}` for logical types in its
/// canonical form, so its `Schema::fingerprint` differs and is not used.
pub fn fingerprint(schema_json: &str) -> Result<[u8; 8], String> {
    let schema: serde_avro_fast::Schema = schema_json.parse().map_err(|e| format!("{e}"))?;
    Ok(*schema.rabin_fingerprint())
}

/// Encodes `value` as a single-object record of an arbitrary writer schema
/// whose fingerprint is `fingerprint` (see [`fingerprint`]).
pub fn encode_with_schema<T: Serialize>(
    schema: &apache_avro::Schema,
    fingerprint: [u8; 8],
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let value = apache_avro::to_value(value).map_err(|e| e.to_string())?;
    let value = value.resolve(schema).map_err(|e| e.to_string())?;
    let datum = apache_avro::to_avro_datum(schema, value).map_err(|e| e.to_string())?;
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fingerprint);
    out.extend_from_slice(&datum);
    Ok(())
}
