//! numpy's default random stream, so that a seeded reset gives the same initial state as
//! `gymnasium.make(id).reset(seed=seed)`.
//!
//! gymnasium seeds an environment with `np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))`.
//! This module implements, from their published descriptions:
//! - [`SeedSequence`]: O'Neill's `seed_seq` entropy pool (4 words of 32 bits) as numpy uses it;
//! - [`Pcg64`]: the 128-bit PCG generator with the XSL-RR output function;
//! - [`NpRandom`]: the `Generator` methods the classic-control resets use (`random`, `uniform`).

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// numpy's `SeedSequence(entropy)` for an integer entropy and no spawn key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

/// Scrambles `value` with the running multiplier `hash_const`, advancing it.
fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

/// Combines two pool words.
fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

impl SeedSequence {
    /// The sequence for a non-negative integer seed (numpy splits it into 32-bit words, least
    /// significant first; zero is one word).
    pub fn new(entropy: u128) -> Self {
        let mut words = Vec::with_capacity(4);
        let mut rest = entropy;
        loop {
            words.push(rest as u32);
            rest >>= 32;
            if rest == 0 {
                break;
            }
        }
        Self::from_words(&words)
    }

    /// The sequence for entropy given as 32-bit words (least significant first).
    pub fn from_words(entropy: &[u32]) -> Self {
        let mut pool = [0u32; POOL_SIZE];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        for src in 0..POOL_SIZE {
            for dst in 0..POOL_SIZE {
                if src != dst {
                    let h = hashmix(pool[src], &mut hash_const);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        for &word in entropy.iter().skip(POOL_SIZE) {
            for slot in pool.iter_mut() {
                *slot = mix(*slot, hashmix(word, &mut hash_const));
            }
        }
        Self { pool }
    }

    /// `generate_state(n, np.uint32)`: `n` words drawn from the pool.
    pub fn generate_u32(&self, n: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        (0..n)
            .map(|i| {
                let mut v = self.pool[i % POOL_SIZE] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect()
    }

    /// `generate_state(n, np.uint64)`: pairs of 32-bit words, the first one low.
    pub fn generate_u64(&self, n: usize) -> Vec<u64> {
        self.generate_u32(2 * n).chunks_exact(2).map(|w| w[0] as u64 | (w[1] as u64) << 32).collect()
    }
}

const PCG_MULTIPLIER: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;

/// The PCG64 generator (128-bit LCG state, XSL-RR output), numpy's default bit generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
}

impl Pcg64 {
    /// PCG's `srandom(initstate, initseq)`.
    pub fn new(initstate: u128, initseq: u128) -> Self {
        let mut rng = Self { state: 0, inc: (initseq << 1) | 1 };
        rng.advance();
        rng.state = rng.state.wrapping_add(initstate);
        rng.advance();
        rng
    }

    /// `np.random.PCG64(seed_sequence)`: four 64-bit words give the state and the stream.
    pub fn from_seed_sequence(seq: &SeedSequence) -> Self {
        let w = seq.generate_u64(4);
        Self::new((w[0] as u128) << 64 | w[1] as u128, (w[2] as u128) << 64 | w[3] as u128)
    }

    #[inline]
    fn advance(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULTIPLIER).wrapping_add(self.inc);
    }

    /// The next 64 raw bits (numpy's `random_raw`).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.advance();
        let hi = (self.state >> 64) as u64;
        let lo = self.state as u64;
        (hi ^ lo).rotate_right((hi >> 58) as u32)
    }
}

/// numpy's `Generator` over [`Pcg64`], limited to what gymnasium's resets draw.
///
/// Serializes as four `u64` words (state high/low, increment high/low), so a saved env state
/// continues the same stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "[u64; 4]", from = "[u64; 4]")]
pub struct NpRandom {
    bits: Pcg64,
}

impl NpRandom {
    /// `np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))`, as gymnasium's
    /// `seeding.np_random(seed)` builds it.
    pub fn from_seed(seed: u64) -> Self {
        Self { bits: Pcg64::from_seed_sequence(&SeedSequence::new(seed as u128)) }
    }

    /// A generator seeded from OS entropy, like `seeding.np_random(None)`.
    pub fn from_entropy() -> Self {
        let words: [u32; 4] = rand::random();
        Self { bits: Pcg64::from_seed_sequence(&SeedSequence::from_words(&words)) }
    }

    /// The next 64 raw bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.bits.next_u64()
    }

    /// `Generator.random()`: a double in [0, 1) from the top 53 bits.
    #[inline]
    pub fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9007199254740992.0)
    }

    /// `Generator.uniform(low, high)`: `low + (high - low) * random()`.
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let range = high - low;
        low + range * self.random()
    }

    /// `Generator.uniform(low, high, size=N)` with array or scalar bounds, drawn in order.
    pub fn uniform_array<const N: usize>(&mut self, low: [f64; N], high: [f64; N]) -> [f64; N] {
        std::array::from_fn(|i| self.uniform(low[i], high[i]))
    }
}

impl From<NpRandom> for [u64; 4] {
    fn from(r: NpRandom) -> Self {
        let Pcg64 { state, inc } = r.bits;
        [(state >> 64) as u64, state as u64, (inc >> 64) as u64, inc as u64]
    }
}

impl From<[u64; 4]> for NpRandom {
    fn from(w: [u64; 4]) -> Self {
        let join = |hi: u64, lo: u64| (hi as u128) << 64 | lo as u128;
        // PCG's increment is odd by construction; keep it so even for a hand-edited state.
        Self { bits: Pcg64 { state: join(w[0], w[1]), inc: join(w[2], w[3]) | 1 } }
    }
}

/// gymnasium's `Env.reset(seed=...)` seeding: `Some(seed)` starts a new stream, `None` continues
/// the current one (seeding from OS entropy on first use).
pub fn reseed(rng: &mut Option<NpRandom>, seed: Option<u64>) -> &mut NpRandom {
    if let Some(seed) = seed {
        *rng = Some(NpRandom::from_seed(seed));
    }
    rng.get_or_insert_with(NpRandom::from_entropy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_42_matches_numpy() {
        // np.random.SeedSequence(42).generate_state(4, np.uint64)
        let expected = [11465652750463011511, 15382171918060459190, 9018504550953525431, 3703499796004394495];
        assert_eq!(SeedSequence::new(42).generate_u64(4), expected);
        // np.random.PCG64(np.random.SeedSequence(42)).random_raw(3)
        let mut r = NpRandom::from_seed(42);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [14276969152011380360, 8095878257575067585, 15838336090824644132]
        );
    }

    #[test]
    fn same_seed_same_stream_and_different_seeds_differ() {
        let mut a = NpRandom::from_seed(42);
        let mut b = NpRandom::from_seed(42);
        let mut c = NpRandom::from_seed(43);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..8).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn large_seeds_use_more_than_one_word() {
        assert_eq!(SeedSequence::new(5), SeedSequence::from_words(&[5]));
        assert_eq!(SeedSequence::new(1 << 40 | 3), SeedSequence::from_words(&[3, 1 << 8]));
        assert_ne!(SeedSequence::new(1 << 40 | 3), SeedSequence::new(3));
    }

    #[test]
    fn a_saved_generator_continues_the_same_stream() {
        let mut a = NpRandom::from_seed(7);
        a.next_u64();
        let json = serde_json::to_string(&a).unwrap();
        let mut b: NpRandom = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
        assert_eq!((0..5).map(|_| a.next_u64()).collect::<Vec<_>>(), (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut r = NpRandom::from_seed(0);
        for _ in 0..10_000 {
            let x = r.uniform(-0.05, 0.05);
            assert!((-0.05..0.05).contains(&x));
        }
    }
}
