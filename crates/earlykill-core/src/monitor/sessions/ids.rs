//! The sessions' ids, packed into 64 KiB chunks.
//!
//! A session's own ids (variant and post; the persona is shared, see
//! `Profiles`) are stored back to back in a chunk; the session keeps their
//! position (4 bytes) and lengths. One
//! allocation per session would cost a 16-byte fat pointer in the session
//! and the allocator's per-block overhead (a 42-byte block takes 64 bytes
//! in glibc); a chunk costs neither. Ids never straddle chunks. A chunk
//! whose ids are all gone is emptied and reused; when less than half of
//! the bytes held are still in use, [`Ids::needs_compaction`] says so and
//! the owner moves every live id into fresh chunks.

use std::num::NonZeroU32;

/// Bytes per chunk. A session's ids are at most 2 × 511 bytes, so a chunk
/// wastes at most 1 021 bytes at its end.
const CHUNK: usize = 1 << 16;

/// Most chunks: an [`At`] holds the chunk in 16 bits, and the last chunk
/// number is left out so that `At` is never zero. 65 535 chunks are 4 GiB
/// of ids in one partition, far above what [`super::MAX_SESSIONS`]
/// sessions of ordinary ids need.
const MAX_CHUNKS: usize = (1 << 16) - 1;

/// Where a session's ids are: chunk (16 bits) and offset (16 bits), plus
/// one so that `Option<Session>` needs no extra tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct At(NonZeroU32);

impl At {
    fn new(chunk: usize, offset: usize) -> Self {
        debug_assert!(chunk < MAX_CHUNKS && offset < CHUNK);
        let raw = ((chunk as u32) << 16 | offset as u32) + 1;
        Self(NonZeroU32::new(raw).unwrap_or(NonZeroU32::MIN))
    }

    fn chunk(self) -> usize {
        ((self.0.get() - 1) >> 16) as usize
    }

    fn offset(self) -> usize {
        ((self.0.get() - 1) & 0xFFFF) as usize
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ids {
    chunks: Vec<String>,
    /// Live bytes per chunk.
    live: Vec<u32>,
    /// Emptied chunks, ready for reuse.
    spare: Vec<usize>,
    /// The chunk new ids go to.
    current: Option<usize>,
    live_bytes: usize,
}

impl Ids {
    /// Stores `parts` back to back and says where; `None` when every one
    /// of the [`MAX_CHUNKS`] chunks is in use and too full for them.
    pub(crate) fn push(&mut self, parts: [&str; 2]) -> Option<At> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(len < CHUNK);
        let chunk = match self.current {
            // Strictly below: an id ending at the chunk's last byte would
            // start at an offset `At` still holds, but keep one byte free so
            // that an empty id at the very end does too.
            Some(c) if self.chunks[c].len() + len < CHUNK => c,
            _ => {
                let c = match self.spare.pop() {
                    Some(c) => c,
                    None if self.chunks.len() >= MAX_CHUNKS => return None,
                    None => {
                        self.chunks.push(String::new());
                        self.live.push(0);
                        self.chunks.len() - 1
                    }
                };
                self.chunks[c].reserve_exact(CHUNK);
                self.current = Some(c);
                c
            }
        };
        let text = &mut self.chunks[chunk];
        let at = At::new(chunk, text.len());
        for part in parts {
            text.push_str(part);
        }
        self.live[chunk] += len as u32;
        self.live_bytes += len;
        Some(at)
    }

    /// The `len` bytes stored at `at`.
    pub(crate) fn get(&self, at: At, len: usize) -> &str {
        let offset = at.offset();
        &self.chunks[at.chunk()][offset..offset + len]
    }

    /// Asks the CPU to fetch the first bytes stored at `at`.
    pub(crate) fn prefetch(&self, at: At) {
        if let Some(chunk) = self.chunks.get(at.chunk()) {
            super::prefetch(chunk.as_ptr().wrapping_add(at.offset()));
        }
    }

    /// Gives back the `len` bytes stored at `at`. A chunk left with none
    /// is emptied for reuse; its memory is returned unless it is the only
    /// spare.
    pub(crate) fn release(&mut self, at: At, len: usize) {
        let c = at.chunk();
        self.live[c] -= len as u32;
        self.live_bytes -= len;
        if self.live[c] == 0 {
            let chunk = &mut self.chunks[c];
            chunk.clear();
            if self.current == Some(c) {
                // Keep filling it from the start.
                return;
            }
            if !self.spare.is_empty() {
                chunk.shrink_to(0);
            }
            self.spare.push(c);
        }
    }

    /// Bytes held by chunks (capacity, used or not).
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.iter().map(String::capacity).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<String>()
            + self.live.capacity() * 4
    }

    /// True when fewer than half the bytes of the non-spare chunks are in
    /// use (and there are at least four of them): time to compact.
    pub(crate) fn needs_compaction(&self) -> bool {
        let held = (self.chunks.len() - self.spare.len()) * CHUNK;
        held >= 4 * CHUNK && self.live_bytes * 2 < held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_never_straddle_chunks() {
        let mut ids = Ids::default();
        let long = "x".repeat(500);
        let mut stored = Vec::new();
        for i in 0..500 {
            let v = format!("variant-{i}");
            let at = ids.push([&v, &long]).expect("room");
            stored.push((at, format!("{v}{long}")));
        }
        for (at, text) in &stored {
            assert_eq!(ids.get(*at, text.len()), text);
        }
        assert!(ids.chunks.len() >= 4, "500 × ~510 bytes need 4 chunks");
        assert!(ids.chunks.iter().all(|c| c.len() < CHUNK));
    }

    #[test]
    fn an_emptied_chunk_is_reused_and_compaction_is_asked_for_when_sparse() {
        let mut ids = Ids::default();
        let id = "v".repeat(256);
        let stored: Vec<At> = (0..3000).map(|_| ids.push([&id, &id]).unwrap()).collect();
        let chunks = ids.chunks.len();
        assert!(!ids.needs_compaction());
        // Keep one id in five: every chunk stays partly used.
        for (i, at) in stored.iter().enumerate() {
            if i % 5 != 0 {
                ids.release(*at, 512);
            }
        }
        assert!(ids.needs_compaction(), "a fifth of the bytes are in use");
        for (i, at) in stored.iter().enumerate() {
            if i % 5 == 0 {
                ids.release(*at, 512);
            }
        }
        assert_eq!(ids.live_bytes, 0);
        assert!(!ids.needs_compaction());
        let at = ids.push([&id, ""]).unwrap();
        assert_eq!(ids.get(at, 256), id);
        assert_eq!(
            ids.chunks.len(),
            chunks,
            "no chunk is added while spares exist"
        );
    }

    #[test]
    fn positions_hold_every_chunk_and_offset_and_the_last_chunk_is_refused() {
        for (chunk, offset) in [
            (0, 0),
            (0, CHUNK - 1),
            (MAX_CHUNKS - 1, CHUNK - 1),
            (77, 12),
        ] {
            let at = At::new(chunk, offset);
            assert_eq!((at.chunk(), at.offset()), (chunk, offset));
        }
        let mut ids = Ids {
            chunks: vec![String::new(); MAX_CHUNKS],
            live: vec![1; MAX_CHUNKS],
            current: Some(MAX_CHUNKS - 1),
            ..Ids::default()
        };
        ids.chunks[MAX_CHUNKS - 1] = "x".repeat(CHUNK - 3);
        assert!(ids.push(["ab", ""]).is_some(), "room for two bytes");
        assert_eq!(ids.push(["c", ""]), None, "no chunk left");
    }
}
