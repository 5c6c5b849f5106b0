//! The generator's own pseudo-random numbers: xoshiro256** seeded through SplitMix64, plus
//! a logarithm built from `+ - * /` only. Written here, not taken from a crate, so a given seed
//! yields the same event stream forever (no crate upgrade or libm difference can change it).

use std::f64::consts::{FRAC_1_SQRT_2, LN_2};

/// One SplitMix64 step: advances `state` and returns a well-mixed 64-bit value.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*state)
}

/// The SplitMix64 finaliser: a bijective mix of one 64-bit value.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman and Vigna), the generator's only source of randomness.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the four state words from `seed` with SplitMix64, as the authors recommend.
    pub(crate) fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// A new generator whose stream is independent of this one's (seeded from it).
    pub(crate) fn fork(&mut self, salt: u64) -> Rng {
        Rng::new(self.next_u64() ^ mix64(salt))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]; never zero, so its logarithm is finite.
    fn unit_open_zero(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `lo..=hi` (returns `lo` when `hi <= lo`).
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        // Lemire's multiply-shift; the tiny bias is irrelevant for test data.
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    /// Uniform index into a slice of length `len` (`len` must be > 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.range(0, len as i64 - 1) as usize
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Index chosen with probability proportional to `weights` (all >= 0, sum > 0).
    pub(crate) fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        // Rounding can leave x a hair above the last bucket: take the last positive weight.
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// An exponentially distributed waiting time with mean `mean`.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -det_ln(self.unit_open_zero()) * mean
    }

    /// `n` random lowercase hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(n);
        let mut bits = 0u64;
        for i in 0..n {
            if i % 16 == 0 {
                bits = self.next_u64();
            }
            out.push(DIGITS[(bits & 0xf) as usize] as char);
            bits >>= 4;
        }
        out
    }

    /// A random UUID-shaped string (version 4 layout), lowercase.
    pub(crate) fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-4{}-{}{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            ["8", "9", "a", "b"][(self.next_u64() % 4) as usize],
            &h[17..20],
            &h[20..32]
        )
    }
}

/// Natural logarithm of a positive, normal `x`, from basic arithmetic only (IEEE 754 makes
/// those bit-exact everywhere, unlike a platform `ln`). Error below 1e-15 relative.
pub(crate) fn det_ln(x: f64) -> f64 {
    let bits = x.to_bits();
    // x = m * 2^e with m in [0.5, 1).
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1022u64 << 52));
    if m < FRAC_1_SQRT_2 {
        m *= 2.0;
        e -= 1;
    }
    // ln(m) = 2 atanh(z), z = (m-1)/(m+1), |z| <= 0.172: the series converges fast.
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    for _ in 0..14 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_stream_is_pinned() {
        // Pinned so that any change to the PRNG (and hence every generated stream) is noticed.
        let mut rng = Rng::new(1);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        let mut again = Rng::new(1);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        assert_eq!(mix64(0), 0);
        let mut sm = 0u64;
        // Reference value of SplitMix64 seeded with 0 (first output).
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn det_ln_agrees_with_std_ln() {
        for x in [
            1e-16,
            1e-9,
            0.001,
            0.1,
            0.5,
            FRAC_1_SQRT_2,
            0.72,
            0.9,
            0.999_999,
            1.0,
            2.0,
            1e6,
        ] {
            let got = det_ln(x);
            let want = x.ln();
            assert!(
                (got - want).abs() <= 1e-14 * want.abs().max(1.0),
                "ln({x}): {got} vs {want}"
            );
        }
    }

    #[test]
    fn range_and_weighted_stay_in_bounds() {
        let mut rng = Rng::new(7);
        let mut hits = [0usize; 3];
        for _ in 0..3000 {
            let v = rng.range(-2, 2);
            assert!((-2..=2).contains(&v));
            hits[rng.weighted(&[1.0, 0.0, 3.0])] += 1;
        }
        assert_eq!(hits[1], 0, "a zero weight must never be chosen");
        assert!(
            hits[2] > hits[0] * 2,
            "weights 1:3 should favour the last bucket: {hits:?}"
        );
    }

    #[test]
    fn exponential_has_the_requested_mean() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.exponential(5.0)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.2, "mean {mean}");
    }
}
