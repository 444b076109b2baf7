//! A Confluent Schema Registry client: writer schemas by id, for records
//! framed by Confluent's serializers (a zero byte, the 4-byte big-endian
//! schema id, the Avro datum).
//!
//! Only the documented REST call `GET /schemas/ids/{id}` is used. Schemas are
//! fetched once per id and kept by the decoders (ids are immutable in a
//! registry), so the hot path makes no HTTP request.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

/// Why a schema could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry does not know the id: the record cannot be read.
    #[error("the schema registry has no schema with id {id}")]
    NotFound {
        /// The id.
        id: u32,
    },
    /// The id is a schema of another kind (JSON Schema, Protobuf).
    #[error("schema {id} in the schema registry is {kind}, not Avro")]
    NotAvro {
        /// The id.
        id: u32,
        /// Its schemaType.
        kind: String,
    },
    /// The registry refused to register a schema (incompatible with the
    /// subject's compatibility rule, invalid, not allowed).
    #[error(
        "the schema registry refused the schema for subject {subject:?}: HTTP {status}: {message}"
    )]
    Refused {
        /// The subject.
        subject: String,
        /// The HTTP status.
        status: u16,
        /// The registry's explanation.
        message: String,
    },
    /// The registry could not be asked (down, refusing, timing out): the
    /// record is kept and asked for again.
    #[error("the schema registry at {url} is unavailable: {reason}")]
    Unavailable {
        /// The registry.
        url: String,
        /// What happened.
        reason: String,
    },
}

/// Where the registry is and how to reach it.
#[derive(Clone)]
pub struct Registry {
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client of the registry at `url` (http or https), with basic
    /// authentication `user:password` and extra CA certificates (PEM) when
    /// given.
    pub fn new(
        url: &str,
        basic_auth: Option<&str>,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Registry, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        }
        let mut tls = native_tls::TlsConnector::builder();
        if let Some(file) = ca_file {
            let pem =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let cert = native_tls::Certificate::from_pem(&pem)
                .map_err(|e| format!("{} is not a PEM certificate: {e}", file.display()))?;
            tls.add_root_certificate(cert);
        }
        let tls = tls.build().map_err(|e| format!("TLS set-up failed: {e}"))?;
        let agent = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(tls))
            .timeout(timeout)
            .build();
        let authorization = basic_auth.map(|user_password| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_password)
            )
        });
        Ok(Registry {
            base: url.trim_end_matches('/').to_owned(),
            agent,
            authorization,
        })
    }

    /// The registry of the `schema-registry-*` settings, when a URL is set
    /// (with a 10-second timeout per request).
    pub fn from_settings(
        url: Option<&str>,
        basic_auth: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Option<Registry>, String> {
        url.map(|url| Registry::new(url, basic_auth, ca_file, Duration::from_secs(10)))
            .transpose()
    }

    /// A request to `path` with the registry's media type and credentials.
    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Accept", "application/vnd.schemaregistry.v1+json");
        match &self.authorization {
            Some(authorization) => request.set("Authorization", authorization),
            None => request,
        }
    }

    fn unavailable(&self, reason: String) -> RegistryError {
        RegistryError::Unavailable {
            url: self.base.clone(),
            reason,
        }
    }

    /// The body of a successful answer. `refused(status, body)` turns an
    /// error status into the caller's error; any other failure is an
    /// outage.
    fn body(
        &self,
        result: Result<ureq::Response, ureq::Error>,
        refused: impl FnOnce(u16, String) -> Option<RegistryError>,
    ) -> Result<String, RegistryError> {
        match result {
            Ok(response) => response
                .into_string()
                .map_err(|e| self.unavailable(e.to_string())),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(refused(status, text.clone())
                    .unwrap_or_else(|| self.unavailable(format!("HTTP {status}: {text}"))))
            }
            Err(e) => Err(self.unavailable(e.to_string())),
        }
    }

    /// The writer schema registered under `id`, as JSON.
    pub fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let result = self.request("GET", &format!("/schemas/ids/{id}")).call();
        let body = self.body(result, |status, _| {
            (status == 404).then_some(RegistryError::NotFound { id })
        })?;
        #[derive(serde::Deserialize)]
        struct Answer {
            schema: String,
            #[serde(rename = "schemaType", default)]
            schema_type: Option<String>,
        }
        let answer: Answer = serde_json::from_str(&body)
            .map_err(|e| self.unavailable(format!("an answer that is not a schema: {e}")))?;
        match answer.schema_type.as_deref() {
            None | Some("AVRO") => Ok(answer.schema),
            Some(other) => Err(RegistryError::NotAvro {
                id,
                kind: other.to_owned(),
            }),
        }
    }

    /// Registers `schema_json` (Avro) under `subject` and returns its id;
    /// the id it already has when registered before (the registry answers
    /// the same id for the same schema).
    pub fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema_json, "schemaType": "AVRO" });
        let result = self
            .request(
                "POST",
                &format!("/subjects/{}/versions", path_segment(subject)),
            )
            .set("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send_string(&body.to_string());
        let answer = self.body(result, |status, message| {
            (400..500)
                .contains(&status)
                .then(|| RegistryError::Refused {
                    subject: subject.to_owned(),
                    status,
                    message,
                })
        })?;
        #[derive(serde::Deserialize)]
        struct Registered {
            id: u32,
        }
        serde_json::from_str::<Registered>(&answer)
            .map(|r| r.id)
            .map_err(|e| self.unavailable(format!("an answer without an id: {e}")))
    }
}

/// A subject name as one URL path segment (topic names hold only
/// `[a-zA-Z0-9._-]`, but a subject may be anything).
fn path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
