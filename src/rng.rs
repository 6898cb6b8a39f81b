//! The one seed every random choice comes from.
//!
//! [`Rng`] is SplitMix64: tiny, fast, and the same on every platform and
//! version, so a seed printed today replays the same run tomorrow.
//! [`Rng::fork`] gives each subsystem its own stream, so adding a draw in one
//! place does not shift the choices made anywhere else.

use std::fmt;
use std::str::FromStr;

/// A run's seed. Prints as the number `--seed` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed(pub u64);

impl Seed {
    /// A fresh seed from the clock, for runs that were given none. The only
    /// place randomness enters; everything after derives from the printed seed.
    pub fn from_clock() -> Seed {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut r = Rng::new(Seed(nanos));
        Seed(r.next_u64() % 1_000_000_000)
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Seed {
    type Err = String;
    fn from_str(s: &str) -> Result<Seed, String> {
        let t = s.trim();
        let parsed = match t.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => t.parse(),
        };
        parsed
            .map(Seed)
            .map_err(|_| format!("`{s}` is not a seed (a decimal or 0x-hex 64-bit number)"))
    }
}

/// A deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: Seed) -> Rng {
        Rng { state: seed.0 }
    }

    /// An independent stream named `label`, derived from this one's seed
    /// without consuming from it.
    pub fn fork(&self, label: &str) -> Rng {
        // FNV-1a of the label, mixed with the state.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut r = Rng {
            state: self.state ^ h,
        };
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        // Multiply-shift: unbiased enough for test data, and deterministic.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        let p = p.clamp(0.0, 1.0);
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_are_independent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(Seed(7));
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(Seed(7));
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        let root = Rng::new(Seed(7));
        assert_ne!(
            root.fork("faults").next_u64(),
            root.fork("source").next_u64()
        );
        assert_eq!(
            root.fork("x").next_u64(),
            Rng::new(Seed(7)).fork("x").next_u64()
        );
    }

    #[test]
    fn seeds_parse_and_print() {
        assert_eq!("42".parse::<Seed>(), Ok(Seed(42)));
        assert_eq!("0x10".parse::<Seed>(), Ok(Seed(16)));
        assert!("x".parse::<Seed>().is_err());
        assert_eq!(Seed(42).to_string(), "42");
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(Seed(1));
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
