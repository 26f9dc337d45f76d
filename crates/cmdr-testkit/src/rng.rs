//! [`Rng`]: a small deterministic generator for randomised tests; every run prints the
//! seed that reproduces it.

/// xorshift64*, seeded from `CMDR_SEED` or the clock.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `CMDR_SEED` when set, else from the clock; prints
    /// `seed: CMDR_SEED=<n>` (on stderr, shown with a failure) so a failing run can be
    /// repeated.
    pub fn seeded() -> Rng {
        let seed = std::env::var("CMDR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("seed: CMDR_SEED={seed}");
        Rng::with_seed(seed)
    }

    /// A fixed seed (0 is made odd: xorshift would stay at 0).
    pub fn with_seed(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// 1 to `max` random bytes.
    pub fn noise(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_repeats_its_sequence_and_stays_in_range() {
        let (mut a, mut b) = (Rng::with_seed(42), Rng::with_seed(42));
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert!(first.windows(2).all(|w| w[0] != w[1]));
        let mut zero = Rng::with_seed(0);
        assert_ne!(zero.next_u64(), 0);
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
        let noise = a.noise(5);
        assert!((1..=5).contains(&noise.len()));
    }
}
