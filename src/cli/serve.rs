//! What every long-running subcommand shares: logging, and a worker on its
//! own thread with the HTTP API beside it until a signal asks it to drain.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use earlykill::api::{self, Api};
use earlykill::shutdown::Shutdown;

/// Runs `work` on a thread named `name` until it returns, or until SIGTERM
/// or Ctrl-C, which asks it to drain (saying `draining` in the log) and
/// waits for it.
pub fn until_signal<E>(
    name: &'static str,
    draining: &'static str,
    http: Option<(SocketAddr, Api)>,
    work: impl FnOnce(Shutdown) -> Result<(), E> + Send + 'static,
) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let shutdown = Shutdown::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = done.send(work(shutdown));
            })?;
    }
    let serving = match http {
        Some((address, api)) => {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(address))
                .with_context(|| {
                    format!("cannot listen on {address}; choose another address with --http-listen (or `off`)")
                })?;
            Some(api::spawn(runtime.handle(), listener, api))
        }
        None => None,
    };
    let result = runtime.block_on(async {
        tokio::pin!(finished);
        tokio::select! {
            result = &mut finished => result,
            _ = earlykill::shutdown::signalled() => {
                tracing::info!("signal received; {draining}");
                shutdown.drain();
                finished.await
            }
        }
    });
    drop(serving);
    result
        .map_err(|_| anyhow::anyhow!("the {name} thread panicked"))?
        .with_context(|| format!("{name} stopped"))?;
    Ok(())
}

/// Logs to stdout: JSON lines when stdout is not a terminal (a container,
/// a pipe, a file), text for people otherwise; `EARLYKILL_LOG_FORMAT=json`
/// or `text` overrides the choice. Installs the metrics recorder too.
pub fn init_logging(filter: &str) -> Result<()> {
    init_logging_to(filter, None)
}

/// As [`init_logging`], into `file` (text unless `EARLYKILL_LOG_FORMAT`
/// says json) when one is given.
pub fn init_logging_to(filter: &str, file: Option<&std::path::Path>) -> Result<()> {
    use std::io::IsTerminal;
    let filter = earlykill::telemetry::log_filter(filter)
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).map_err(|e| e.to_string()))
        .map_err(|problem| {
            anyhow!("configuration key `log-level`: {problem}; use trace, debug, info, warning, error or critical, or a filter such as earlykill=debug")
        })?;
    // Before any worker starts, so that no early metric is lost.
    earlykill::telemetry::prometheus();
    let json = match std::env::var("EARLYKILL_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        Ok(other) => bail!(
            "EARLYKILL_LOG_FORMAT={other:?} is not a log format; use json or text (or unset it)"
        ),
        Err(_) => file.is_none() && !std::io::stdout().is_terminal(),
    };
    let (writer, ansi) = match file {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot write the log file {}", path.display()))?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (BoxMakeWriter::new(std::io::stdout), true),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = if json {
        tracing::subscriber::set_global_default(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        )
    } else {
        tracing::subscriber::set_global_default(builder.finish())
    };
    installed.context("installing the log subscriber")?;
    // librdkafka's lines through a bridge that rate-limits and cleans them
    // (in place of tracing-log's, which `init` would install).
    earlykill::kafka::client_log::install().context("installing the log bridge")?;
    Ok(())
}
