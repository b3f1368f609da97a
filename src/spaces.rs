//! Observation and action spaces: [`Discrete`] and [`BoxSpace`], gymnasium's `Discrete` and `Box`.

use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// A finite set of integers `{start, ..., start + n - 1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Discrete {
    /// Number of elements.
    pub n: usize,
    /// Smallest element.
    pub start: i64,
}

impl Discrete {
    /// `{0, ..., n - 1}`.
    pub fn new(n: usize) -> Self {
        Self { n, start: 0 }
    }

    /// True when `x` is an element.
    pub fn contains(&self, x: i64) -> bool {
        x >= self.start && x < self.start + self.n as i64
    }

    /// Draws an element uniformly.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        self.start + rng.gen_range(0..self.n) as i64
    }
}

/// A box in `R^n` (row-major `shape`), with per-element bounds that may be infinite.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxSpace {
    /// Lower bounds, one per element.
    pub low: Vec<f32>,
    /// Upper bounds, one per element.
    pub high: Vec<f32>,
    /// Shape of one element (product equals `low.len()`).
    pub shape: Vec<usize>,
}

impl BoxSpace {
    /// A flat box with the given bounds.
    ///
    /// # Panics
    /// When `low` and `high` differ in length (a programming error, not bad input).
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Self {
        assert_eq!(low.len(), high.len(), "BoxSpace bounds differ in length");
        let shape = vec![low.len()];
        Self { low, high, shape }
    }

    /// Number of scalar elements.
    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// True when `x` has the right length, is finite where the box is bounded and lies inside.
    pub fn contains(&self, x: &[f32]) -> bool {
        x.len() == self.dim()
            && x.iter().zip(self.low.iter().zip(&self.high)).all(|(v, (lo, hi))| !v.is_nan() && v >= lo && v <= hi)
    }

    /// Draws a point like gymnasium does: uniform where both bounds are finite, a shifted
    /// exponential where one is, a standard normal where neither is.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f32> {
        self.low
            .iter()
            .zip(&self.high)
            .map(|(&lo, &hi)| match (lo.is_finite(), hi.is_finite()) {
                (true, true) => lo + (hi - lo) * rng.gen::<f32>(),
                (true, false) => lo + Distribution::<f32>::sample(&Exp1, rng),
                (false, true) => hi - Distribution::<f32>::sample(&Exp1, rng),
                (false, false) => StandardNormal.sample(rng),
            })
            .collect()
    }
}

/// Either kind of space.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Space {
    /// A finite set of integers.
    Discrete(Discrete),
    /// A box of reals.
    Box(BoxSpace),
}

impl Space {
    /// Flat size of one element: 1 for a discrete space, the element count for a box.
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::Box(b) => b.dim(),
        }
    }

    /// The discrete space, if this is one.
    pub fn as_discrete(&self) -> Option<&Discrete> {
        match self {
            Space::Discrete(d) => Some(d),
            Space::Box(_) => None,
        }
    }

    /// The box space, if this is one.
    pub fn as_box(&self) -> Option<&BoxSpace> {
        match self {
            Space::Box(b) => Some(b),
            Space::Discrete(_) => None,
        }
    }
}

impl From<Discrete> for Space {
    fn from(d: Discrete) -> Self {
        Space::Discrete(d)
    }
}

impl From<BoxSpace> for Space {
    fn from(b: BoxSpace) -> Self {
        Space::Box(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn discrete_contains_and_samples_every_element() {
        let d = Discrete { n: 3, start: -1 };
        assert!(d.contains(-1) && d.contains(1) && !d.contains(2) && !d.contains(-2));
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[(d.sample(&mut rng) + 1) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 900), "{seen:?}");
    }

    #[test]
    fn box_samples_lie_inside_and_are_seeded() {
        let b = BoxSpace::new(vec![-2.0, 0.0, f32::NEG_INFINITY], vec![2.0, f32::INFINITY, 1.0]);
        let mut r1 = rand::rngs::StdRng::seed_from_u64(7);
        let mut r2 = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let x = b.sample(&mut r1);
            assert!(b.contains(&x), "{x:?}");
            assert_eq!(x, b.sample(&mut r2));
        }
        assert!(!b.contains(&[0.0, 0.0]));
        assert!(!b.contains(&[3.0, 0.0, 0.0]));
        assert!(!b.contains(&[f32::NAN, 0.0, 0.0]));
    }
}
