//! The decisions topic's id (KIP-516), watched so that a topic deleted and
//! created again under the same name is noticed: its offsets start at 0
//! again, and the offsets stored with the rows belong to the old topic.
//!
//! A thread of its own asks the broker every [`CHECK_EVERY`] (a
//! DescribeTopics request, which goes to the controller), so the poll loop
//! never waits for it. Brokers that report no ids (before Kafka 2.8), or
//! have no controller to ask (librdkafka's mock cluster), leave the id
//! unknown, and batches are applied unchecked, as before this check.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::kafka::topic_id;

/// How often the broker is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for one answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest id the broker gave for the topic; stops its thread when
/// dropped.
pub struct TopicWatch {
    latest: Arc<Mutex<Option<String>>>,
    _stop: mpsc::Sender<()>,
}

impl TopicWatch {
    /// Starts asking for `topic`'s id with a client made of `client`'s
    /// settings.
    pub fn start(client: &ClientConfig, topic: &str) -> TopicWatch {
        let latest = Arc::new(Mutex::new(None));
        let (stop, stopped) = mpsc::channel::<()>();
        let admin: Option<AdminClient<DefaultClientContext>> = match client.create() {
            Ok(admin) => Some(admin),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a client to read the decisions topic's id; a recreated topic will not be noticed");
                None
            }
        };
        if let Some(admin) = admin {
            let (topic, shared) = (topic.to_owned(), Arc::clone(&latest));
            let spawned = std::thread::Builder::new()
                .name("topic-id".into())
                .spawn(move || loop {
                    match topic_id(admin.inner(), &topic, ASK_TIMEOUT) {
                        Ok(Some(id)) => *lock(&shared) = Some(id),
                        Ok(None) => tracing::debug!(%topic, "the broker reports no topic id"),
                        Err(e) => tracing::debug!(error = %e, "topic id not known yet"),
                    }
                    match stopped.recv_timeout(CHECK_EVERY) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the topic id thread; a recreated topic will not be noticed");
            }
        }
        TopicWatch {
            latest,
            _stop: stop,
        }
    }

    /// The latest id the broker gave, if any.
    pub fn latest(&self) -> Option<String> {
        lock(&self.latest).clone()
    }

    /// Replaces the latest id with one just read.
    pub fn set(&self, id: String) {
        *lock(&self.latest) = Some(id);
    }
}

fn lock(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
