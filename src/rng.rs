//! The crate's one pseudo-random generator: PCG32 (O'Neill, pcg-random.org), integer-only,
//! so a seed gives the same stream natively and in wasm. Used by the sampler, the benchmarks
//! and the tests' random data.

/// PCG32 (XSH-RR output, 64-bit state).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    const MUL: u64 = 6364136223846793005;

    /// Seed on the default stream (54, as in the PCG reference demo).
    pub fn new(seed: u64) -> Rng {
        Rng::with_stream(seed, 54)
    }

    /// `pcg32_srandom_r(seed, stream)`.
    pub fn with_stream(seed: u64, stream: u64) -> Rng {
        let mut r = Rng { state: 0, inc: (stream << 1) | 1 };
        r.next_u32();
        r.state = r.state.wrapping_add(seed);
        r.next_u32();
        r
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    pub fn next_u64(&mut self) -> u64 {
        ((self.next_u32() as u64) << 32) | self.next_u32() as u64
    }

    /// Uniform in `0..n` (`n > 0`; modulo bias is negligible for the small `n` it is used with).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A standard normal value (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = 1.0 - self.next_f32(); // (0, 1]: ln is finite
        let v = self.next_f32();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// `n` normal values plus `offset`.
    pub fn normals(&mut self, n: usize, offset: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() + offset).collect()
    }
}
