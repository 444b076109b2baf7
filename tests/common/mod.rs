//! Helpers shared by the two suites: the core's builders (events with
//! sensible defaults, so each test states only what it is about), and the
//! services a test runs against (the mock cluster, tansu, PostgreSQL, a
//! proxy that cuts connections, the schema registry).
#![allow(dead_code)]

pub mod backlog;
pub mod kafka;
pub mod pip;
pub mod postgres;
pub mod projector;
pub mod proxy;
pub mod registry;
pub mod tansu;

pub use earlykill_core::fixtures::*;
