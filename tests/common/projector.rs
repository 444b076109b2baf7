//! The projector on its own thread, for tests that drive it through Kafka.

use std::thread::JoinHandle;
use std::time::Duration;

use earlykill::projector::{self, ProjectorConfig, ProjectorError, ProjectorStatus};
use earlykill::shutdown::Shutdown;
use earlykill::watch::Watch;

/// Publishes `decisions` to `topic` at `bootstrap` (single-object framing,
/// keyed by variant) and waits up to `patience` for their delivery.
pub fn publish_decisions(
    bootstrap: &str,
    topic: &str,
    decisions: &[earlykill_core::event::MonitoringDecision],
    patience: Duration,
) {
    use earlykill_core::event::codec::encode;
    use earlykill_core::event::Contract;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for d in decisions {
        let value = encode(Contract::MonitoringDecision, d).expect("encode");
        producer
            .send(BaseRecord::to(topic).key(&d.variant_id).payload(&value))
            .expect("send");
    }
    producer.flush(patience).expect("flush");
}

/// Runs `future` to completion on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A projector on its own thread.
pub struct Projecting {
    pub shutdown: Shutdown,
    pub status: Watch<ProjectorStatus>,
    handle: JoinHandle<Result<(), ProjectorError>>,
}

impl Projecting {
    pub fn start(config: ProjectorConfig) -> Projecting {
        let shutdown = Shutdown::new();
        let status = Watch::default();
        let handle = {
            let (shutdown, status) = (shutdown.clone(), status.clone());
            std::thread::spawn(move || projector::run(config, shutdown, status))
        };
        Projecting {
            shutdown,
            status,
            handle,
        }
    }

    /// Waits (at most `patience`, a safety net) until `done` holds.
    pub fn wait(&self, what: &str, patience: Duration, done: impl FnMut(&ProjectorStatus) -> bool) {
        assert!(
            self.status.wait_until(patience, done),
            "{what}: {:?}",
            self.status.get()
        );
    }

    /// Waits for the projector to end on its own (a crash is a return).
    pub fn join(self) -> Result<(), ProjectorError> {
        self.handle.join().expect("projector thread")
    }

    /// Drains and waits for the projector to finish.
    pub fn stop(self) -> Result<(), ProjectorError> {
        self.shutdown.drain();
        self.handle.join().expect("projector thread")
    }
}
