//! librdkafka properties passed through from the configuration: which
//! hold secrets (shown as `***`), and which only consumers understand.

use std::collections::BTreeMap;

/// Whether a librdkafka property holds a secret (a password, a client
/// secret, a private key, OAUTHBEARER or JAAS configuration).
pub fn is_secret_property(key: &str) -> bool {
    [
        "password",
        "secret",
        "pem",
        "sasl.oauthbearer.config",
        "jaas",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// librdkafka properties for debug output: secret values show as `***`.
pub struct Redacted<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, v)
            }))
            .finish()
    }
}

/// librdkafka properties only consumers understand: passed to every
/// client, they would make each producer warn that it ignores them.
const CONSUMER_ONLY: [&str; 12] = [
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "group.instance.id",
];

/// The pass-through properties a producer should get: all but the
/// consumer-only ones.
pub fn producer_properties(
    kafka: &BTreeMap<String, String>,
) -> impl Iterator<Item = (&String, &String)> {
    kafka
        .iter()
        .filter(|(key, _)| !CONSUMER_ONLY.contains(&key.as_str()))
}
