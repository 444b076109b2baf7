//! TLS to PostgreSQL, as libpq's URL settings ask for it.
//!
//! tokio-postgres understands `sslmode=disable|prefer|require` but neither
//! `verify-ca` nor `verify-full` nor the certificate files, so those are
//! taken out of the URL here and given to an OpenSSL connector (OpenSSL is
//! linked already, for Kafka):
//!
//! | `sslmode` | encryption | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked (checked against `sslrootcert` when given, as libpq does) |
//! | `verify-ca` | always | signed by `sslrootcert` (or the system's CAs) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host connected to |
//!
//! `sslcert` and `sslkey` give a client certificate.

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;

use super::StoreError;

/// How to connect, from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    pub(crate) mode: Mode,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// Splits the TLS settings out of a `postgresql://` URL: the URL without
/// them (for tokio-postgres) and the settings. A key=value connection
/// string is returned as it is, with the default settings.
pub(crate) fn split(url: &str) -> Result<(String, Tls), StoreError> {
    let mut tls = Tls {
        mode: Mode::Prefer,
        root_cert: None,
        cert: None,
        key: None,
    };
    let is_uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_uri) else {
        return Ok((url.to_owned(), tls));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "sslmode" => {
                tls.mode = match value.as_str() {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(StoreError::Url(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => tls.root_cert = Some(value),
            "sslcert" => tls.cert = Some(value),
            "sslkey" => tls.key = Some(value),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, tls))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Tls {
    /// tokio-postgres's own mode for these settings.
    pub(crate) fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The OpenSSL connector for these settings.
    pub(crate) fn connector(&self) -> Result<MakeTlsConnector, StoreError> {
        let tls_error = |what: &str, e: openssl::error::ErrorStack| {
            StoreError::Url(format!("TLS to PostgreSQL: {what}: {e}"))
        };
        let mut builder =
            SslConnector::builder(SslMethod::tls()).map_err(|e| tls_error("set up OpenSSL", e))?;
        match &self.root_cert {
            Some(file) => builder
                .set_ca_file(file)
                .map_err(|e| tls_error(&format!("read sslrootcert {file}"), e))?,
            None => builder
                .set_default_verify_paths()
                .map_err(|e| tls_error("load the system's CA certificates", e))?,
        }
        let verify = match self.mode {
            Mode::VerifyCa | Mode::VerifyFull => true,
            // libpq checks the chain in `require` mode when a root
            // certificate is given.
            Mode::Require => self.root_cert.is_some(),
            Mode::Disable | Mode::Prefer => false,
        };
        builder.set_verify(if verify {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        if let Some(cert) = &self.cert {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| tls_error(&format!("read sslcert {cert}"), e))?;
        }
        if let Some(key) = &self.key {
            builder
                .set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
                .map_err(|e| tls_error(&format!("read sslkey {key}"), e))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        let check_host = self.mode == Mode::VerifyFull;
        connector.set_callback(move |config, _| {
            config.set_verify_hostname(check_host);
            Ok(())
        });
        Ok(connector)
    }
}

/// Where `url` points, for error messages: its hosts and ports (never its
/// user or password), e.g. `db.internal:5432`.
pub fn address(url: &str) -> String {
    let parsed = split(url)
        .ok()
        .and_then(|(url, _)| url.parse::<tokio_postgres::Config>().ok());
    let Some(config) = parsed else {
        return "the database-url's server".to_owned();
    };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_the_url() {
        let (url, tls) = split(
            "postgresql://u:p@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=ek",
        )
        .unwrap();
        assert_eq!(url, "postgresql://u:p@db:5432/x?application_name=ek");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (url, tls) = split("postgresql://u@db/x").unwrap();
        assert_eq!(
            (url.as_str(), tls.mode),
            ("postgresql://u@db/x", Mode::Prefer)
        );
        assert!(split("postgresql://u@db/x?sslmode=sometimes").is_err());
    }
}
