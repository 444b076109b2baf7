//! The changelog record's Avro encoding, written field by field.
//!
//! A processor writes one changelog record per session changed in a commit:
//! at a million active variants nearly every input record becomes one, so
//! this encoder is on the hot path. The serde encoder ([`super::codec::encode`])
//! looks each field up by name in the schema and each union branch by type;
//! here the schema's field order is the code's. The bytes are the same:
//! `tests/core/contract.rs` checks them against both the serde encoder and
//! apache-avro's on arbitrary records.

use super::codec::MARKER;
use super::{ChangelogRecord, Contract, HeldInteraction, InputOffsets, SessionState};

/// Appends `record`, single-object encoded with the bundled
/// `ChangelogRecord` schema, to `out`. Every record is encodable.
pub fn encode_changelog_into(record: &ChangelogRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(fingerprint());
    string(out, &record.variant_id);
    optional_long(out, record.partition_clock);
    match &record.input_offsets {
        None => long(out, 0),
        Some(offsets) => {
            long(out, 1);
            input_offsets(out, offsets);
        }
    }
    match &record.session {
        None => long(out, 0),
        Some(session) => {
            long(out, 1);
            session_state(out, session);
        }
    }
    // An array is written in blocks, each a count and its items, ended by
    // an empty block: one block here.
    if !record.held.is_empty() {
        long(out, record.held.len() as i64);
        for held in &record.held {
            held_interaction(out, held);
        }
    }
    long(out, 0);
}

/// The schema's fingerprint, computed once.
fn fingerprint() -> &'static [u8; 8] {
    static FINGERPRINT: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    FINGERPRINT.get_or_init(|| Contract::ChangelogRecord.fingerprint())
}

fn input_offsets(out: &mut Vec<u8>, offsets: &InputOffsets) {
    optional_long(out, offsets.posted);
    optional_long(out, offsets.interactions);
    optional_long(out, offsets.commands);
}

fn session_state(out: &mut Vec<u8>, s: &SessionState) {
    string(out, &s.persona_id);
    string(out, &s.post_id);
    out.extend_from_slice(&s.expected_engagement_rate.to_le_bytes());
    out.extend_from_slice(&s.kill_threshold.to_le_bytes());
    long(out, s.min_interactions.into());
    long(out, s.timeout_minutes.into());
    long(out, s.posted_at);
    long(out, s.interactions);
    long(out, s.views);
    long(out, s.status.symbol_index().into());
    optional_long(out, s.ended_at);
    optional_long(out, s.forget_at);
}

fn held_interaction(out: &mut Vec<u8>, h: &HeldInteraction) {
    string(out, &h.event_id);
    long(out, h.kind.symbol_index().into());
    long(out, h.count);
    long(out, h.occurred_at);
    long(out, h.held_at);
    long(out, h.seq);
}

/// A `["null", "long"]` union: the branch, then the long.
fn optional_long(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        None => long(out, 0),
        Some(n) => {
            long(out, 1);
            long(out, n);
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// An Avro `int` or `long`: zig-zag, then a little-endian base-128
/// varint.
fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        let encoded = |n| {
            let mut out = Vec::new();
            long(&mut out, n);
            out
        };
        assert_eq!(encoded(0), [0]);
        assert_eq!(encoded(-1), [1]);
        assert_eq!(encoded(1), [2]);
        assert_eq!(encoded(-64), [0x7f]);
        assert_eq!(encoded(64), [0x80, 0x01]);
        assert_eq!(
            encoded(i64::MAX),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(
            encoded(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }
}
