//! The Kafka plumbing several components share, in one place: the topics
//! by role, the pass-through properties, the clients' contexts, librdkafka's
//! cached watermarks, the per-partition queues and their wake-up, topic ids,
//! and producing through topic handles.
//! Every `unsafe` call into librdkafka is here or in the processor's client
//! code, each with its `SAFETY` note.

pub mod client_log;
mod contexts;
pub mod produce;
mod properties;
mod queues;
mod topic_id;
mod topics;
mod unreachable;
mod watermarks;

pub use contexts::{flush, log_client_error, DeliveryContext, RestoreContext};
pub use properties::{is_secret_property, producer_properties, Redacted};
pub use queues::{TopicQueues, Wake};
pub use topic_id::{topic_id, DescribeError};
pub use topics::Topics;
pub use unreachable::Unreachable;
pub use watermarks::cached_watermarks;
