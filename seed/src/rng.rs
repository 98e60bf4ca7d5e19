//! Tiny self-contained deterministic PRNG (SplitMix64).
//!
//! Only integer arithmetic is used so the output is bit-for-bit identical on
//! every platform.

/// Golden-ratio increment of SplitMix64 (odd, so the state walks all 2^64 values).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64 finaliser. It is a bijection on `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64 generator.
///
/// Because the state advances by an odd constant and [`mix64`] is a
/// bijection, the first 2^64 outputs of one generator are pairwise distinct.
/// The access-token generator relies on that to guarantee unique tokens.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Generator starting from a raw state.
    pub fn new(state: u64) -> Self {
        Self { state }
    }

    /// Independent stream derived from the user seed and a per-purpose tag,
    /// so that e.g. the item table does not change when `--alarms` changes.
    pub fn stream(seed: u64, tag: u64) -> Self {
        Self::new(mix64(seed ^ mix64(tag.wrapping_mul(GAMMA))))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform-ish value in `0..n` (multiply-shift; 0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// `true` with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// Uniformly chosen element of a non-empty slice (`None` if empty).
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        xs.get(self.below(xs.len() as u64) as usize)
    }

    /// Uniformly chosen string of a list, `""` for an empty list.
    pub fn word(&mut self, xs: &[&'static str]) -> &'static str {
        self.pick(xs).copied().unwrap_or("")
    }

    /// Index chosen with the given relative weights (0 for an empty/zero list).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Known SplitMix64 outputs for state 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn bounded_helpers() {
        let mut r = SplitMix64::stream(42, 1);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let v = r.range(3, 5);
            assert!((3..=5).contains(&v));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range(9, 2), 9);
        assert_eq!(r.weighted(&[0, 5, 0]), 1);
        assert_eq!(r.pick::<u8>(&[]), None);
    }
}
