//! The hold-out share: a fixed share of variants, chosen by a hash of the
//! `variant_id`, that the live policy watches but never kills, so that
//! what the rule would have done to them can be measured against what
//! they went on to do.
//!
//! The hash is FNV-1a (64 bit) of the id's bytes, reduced modulo one
//! million: the same variant is in or out of a share on every instance,
//! after every restart and in every version. The share is in parts per
//! million; a variant is in it when its reduced hash is below that.

/// How a monitor treats the hold-out share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Holdout {
    /// No share: every variant is judged.
    #[default]
    None,
    /// The live policy: variants in the share are watched as usual (they
    /// start, count, time out and stop) but the rule never kills them.
    Spare {
        /// The share, in parts per million.
        parts_per_million: u32,
    },
    /// The `holdout` shadow policy: only variants in the share are folded,
    /// judged as the live policy would judge them without a share; the
    /// others move its clock and nothing else.
    Only {
        /// The share, in parts per million.
        parts_per_million: u32,
    },
}

/// One million: a share's unit.
pub const PARTS: u32 = 1_000_000;

impl Holdout {
    /// Parts per million of a share between 0 and 1.
    pub fn parts_per_million(share: f64) -> u32 {
        (share.clamp(0.0, 1.0) * f64::from(PARTS)).round() as u32
    }

    /// Whether the live policy never kills `variant_id`.
    pub fn spares(&self, variant_id: &str) -> bool {
        match *self {
            Holdout::Spare { parts_per_million } => in_share(variant_id, parts_per_million),
            _ => false,
        }
    }

    /// Whether this monitor leaves `variant_id` out.
    pub fn excludes(&self, variant_id: &str) -> bool {
        match *self {
            Holdout::Only { parts_per_million } => !in_share(variant_id, parts_per_million),
            _ => false,
        }
    }
}

/// Whether `variant_id` is in a share of `parts_per_million`.
pub fn in_share(variant_id: &str, parts_per_million: u32) -> bool {
    fnv1a(variant_id.as_bytes()) % u64::from(PARTS) < u64::from(parts_per_million)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of the FNV reference (draft-eastlake-fnv).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_share_holds_about_its_fraction_of_variants() {
        let share = Holdout::parts_per_million(0.2);
        let held = (0..100_000)
            .filter(|i| in_share(&format!("variant-{i}"), share))
            .count();
        assert!((19_000..21_000).contains(&held), "{held} of 100 000");
        assert!(!(0..1000).any(|i| in_share(&format!("v{i}"), 0)));
        assert!((0..1000).all(|i| in_share(&format!("v{i}"), PARTS)));
    }

    #[test]
    fn spare_and_only_are_complements_of_the_same_share() {
        let ppm = Holdout::parts_per_million(0.3);
        for i in 0..1000 {
            let id = format!("v-{i}");
            let spared = Holdout::Spare {
                parts_per_million: ppm,
            }
            .spares(&id);
            let excluded = Holdout::Only {
                parts_per_million: ppm,
            }
            .excludes(&id);
            assert_ne!(spared, excluded, "{id}");
            assert!(!Holdout::None.spares(&id) && !Holdout::None.excludes(&id));
        }
    }
}
