//! librdkafka's own log lines, as people can read them: librdkafka logs
//! through the `log` facade (rust-rdkafka's default client context), and a
//! broker that cannot be reached makes it repeat the same few lines many
//! times a second, each carrying the source file in the cargo registry it
//! came from. This bridge lets each distinct line (its digits aside) through
//! at most once every [`QUIET_FOR`], saying how many like it were held back,
//! and without the `log.*` fields. Every other `log` record goes to tracing
//! as `tracing-log` would send it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the same librdkafka line stays quiet after it was logged.
pub const QUIET_FOR: Duration = Duration::from_secs(30);

/// The bridge; install with [`install`].
#[derive(Default)]
pub struct ClientLog {
    /// Per line (digits aside): when it was last let through, and how many
    /// like it were held back since.
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

/// The process's bridge: the `log` facade's logger once [`install`]ed,
/// and the gate of earlykill's own reports of librdkafka errors.
static CLIENT_LOG: std::sync::LazyLock<ClientLog> = std::sync::LazyLock::new(ClientLog::default);

/// Installs the bridge as the `log` facade's logger (once per process).
pub fn install() -> Result<(), log::SetLoggerError> {
    log::set_logger(&*CLIENT_LOG)?;
    // Nothing more verbose than the subscriber writes: the `log` macros
    // then skip what it would drop before building a record.
    log::set_max_level(tracing_log::AsLog::as_log(
        &tracing::level_filters::LevelFilter::current(),
    ));
    Ok(())
}

/// Whether a librdkafka report `line` may be logged now (see
/// [`ClientLog::admit`]), for the client contexts' own reports.
pub fn admit(line: &str) -> Option<u64> {
    CLIENT_LOG.admit(line, Instant::now())
}

/// Whether `target` is librdkafka's or rust-rdkafka's.
fn from_kafka(target: &str) -> bool {
    target == "librdkafka" || target.starts_with("rdkafka")
}

/// The line with every run of digits as `#` and librdkafka's own "(after
/// ...)" tail cut: what stays the same when it repeats.
fn shape(line: &str) -> String {
    let line = line.split(" (after ").next().unwrap_or(line);
    let mut shape = String::with_capacity(line.len());
    let mut digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !digits {
                shape.push('#');
            }
            digits = true;
        } else {
            shape.push(c);
            digits = false;
        }
    }
    shape
}

impl ClientLog {
    /// Whether `line` may be logged now, and how many like it were held
    /// back since it last was.
    pub fn admit(&self, line: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(shape(line)).or_insert((now - QUIET_FOR, 0));
        if now.duration_since(entry.0) >= QUIET_FOR {
            let held = std::mem::take(&mut entry.1);
            entry.0 = now;
            Some(held)
        } else {
            entry.1 += 1;
            None
        }
    }
}

/// Whether a client line at `level` would be written under the target
/// `librdkafka`, where [`ClientLog`] re-emits it. Asked before anything
/// else: the rdkafka crate logs at debug and trace level on its hot paths
/// (a line per delivery report), and a line nobody will see must cost no
/// formatting, lock or clock read (it cost the processor a third of its
/// throughput at a million variants before this check).
fn kafka_enabled(level: log::Level) -> bool {
    match level {
        log::Level::Error => tracing::enabled!(target: "librdkafka", tracing::Level::ERROR),
        log::Level::Warn => tracing::enabled!(target: "librdkafka", tracing::Level::WARN),
        log::Level::Info => tracing::enabled!(target: "librdkafka", tracing::Level::INFO),
        log::Level::Debug => tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG),
        log::Level::Trace => tracing::enabled!(target: "librdkafka", tracing::Level::TRACE),
    }
}

impl log::Log for ClientLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        if from_kafka(metadata.target()) {
            return kafka_enabled(metadata.level());
        }
        tracing::dispatcher::get_default(|dispatch| {
            dispatch.enabled(&tracing_log::AsTrace::as_trace(metadata))
        })
    }

    fn log(&self, record: &log::Record<'_>) {
        if !from_kafka(record.target()) {
            let _ = tracing_log::format_trace(record);
            return;
        }
        // The `log` macros ask `enabled` only through the global maximum
        // level; ask again here.
        if !kafka_enabled(record.level()) {
            return;
        }
        let line = record.args().to_string();
        let Some(held) = self.admit(&line, Instant::now()) else {
            return;
        };
        let line = line.strip_prefix("librdkafka: ").unwrap_or(&line);
        let held = (held > 0).then_some(held);
        match record.level() {
            log::Level::Error => tracing::error!(target: "librdkafka", held_back = held, "{line}"),
            log::Level::Warn => tracing::warn!(target: "librdkafka", held_back = held, "{line}"),
            log::Level::Info => tracing::info!(target: "librdkafka", held_back = held, "{line}"),
            log::Level::Debug => tracing::debug!(target: "librdkafka", held_back = held, "{line}"),
            log::Level::Trace => tracing::trace!(target: "librdkafka", held_back = held, "{line}"),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_let_through_once_per_quiet_period_with_the_count() {
        let log = ClientLog::default();
        let t0 = Instant::now();
        let refused = |ms: u32| {
            format!("FAIL [thrd:127.0.0.1:1/bootstrap]: Connect failed: Connection refused (after {ms}ms in state CONNECT)")
        };
        assert_eq!(log.admit(&refused(0), t0), Some(0));
        for ms in 1..100 {
            assert_eq!(
                log.admit(&refused(ms), t0 + Duration::from_millis(u64::from(ms))),
                None
            );
        }
        assert_eq!(
            log.admit("another line", t0),
            Some(0),
            "another line is not held"
        );
        assert_eq!(log.admit(&refused(5), t0 + QUIET_FOR), Some(99));
        assert_eq!(log.admit(&refused(6), t0 + QUIET_FOR), None);
    }

    #[test]
    fn a_client_line_below_the_subscribers_level_never_reaches_the_limiter() {
        use log::Log;
        let log = ClientLog::default();
        let record = |level, text| {
            let args = format_args!("{text}");
            let mut builder = log::Record::builder();
            builder.level(level).target("rdkafka::producer").args(args);
            log.log(&builder.build());
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            record(log::Level::Trace, "delivery report");
            record(log::Level::Debug, "polling");
            assert!(
                log.seen.lock().unwrap().is_empty(),
                "nothing below info was counted"
            );
            record(log::Level::Warn, "broker down");
            assert_eq!(log.seen.lock().unwrap().len(), 1, "a warning is");
        });
    }

    #[test]
    fn the_shape_of_a_line_is_its_text_without_digits_or_the_after_tail() {
        assert_eq!(
            shape("1/1 brokers are down (after 12ms in state UP)"),
            "#/# brokers are down"
        );
    }
}
