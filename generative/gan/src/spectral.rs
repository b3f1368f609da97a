//! Spectral normalisation (Miyato et al. 2018): a weight `W` (as an `O x n` matrix, the output
//! channels as rows, as PyTorch's `spectral_norm`) is used as `W / sigma(W)`, with `sigma` its
//! largest singular value, estimated by one power-iteration step per use from a persistent `u`.
//!
//! dfdx's layers own their weights, so the normalised weight is swapped in for the forward and
//! backward passes ([`SpectralNorm::normalise`]) and the raw weight swapped back with its
//! gradient mapped through `W / sigma` ([`SpectralNorm::restore`]): with `sigma = u^T W v` (u, v
//! held fixed), `dL/dW = (G - <G, W / sigma> u v^T) / sigma` for `G = dL/d(W / sigma)`.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The power-iteration state of one weight and what a swap needs to undo it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SpectralNorm {
    /// Rows of the matrix view.
    pub rows: usize,
    /// The left singular vector estimate, `rows` long.
    pub u: Vec<f32>,
    #[serde(skip)]
    swapped: Option<Swap>,
}

#[derive(Debug, Clone, PartialEq)]
struct Swap {
    raw: Vec<f32>,
    v: Vec<f32>,
    sigma: f32,
}

fn normalise_vec(x: &mut [f32]) {
    let norm = x.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt().max(1e-12) as f32;
    x.iter_mut().for_each(|a| *a /= norm);
}

/// `W v` for `W` of `rows x cols`, row-major.
fn mat_vec(w: &[f32], rows: usize, v: &[f32]) -> Vec<f32> {
    w.chunks_exact(w.len() / rows).map(|row| row.iter().zip(v).map(|(&a, &b)| a * b).sum()).collect()
}

/// `W^T u`.
fn mat_t_vec(w: &[f32], rows: usize, u: &[f32]) -> Vec<f32> {
    let cols = w.len() / rows;
    let mut out = vec![0.0f32; cols];
    for (row, &ui) in w.chunks_exact(cols).zip(u) {
        out.iter_mut().zip(row).for_each(|(o, &a)| *o += a * ui);
    }
    out
}

impl SpectralNorm {
    /// A state for a matrix of `rows` rows, `u` drawn from N(0, 1) and normalised.
    pub fn new(rows: usize, rng: &mut impl Rng) -> Self {
        let mut u: Vec<f32> = (0..rows).map(|_| rng.sample(rand_distr::StandardNormal)).collect();
        normalise_vec(&mut u);
        Self { rows, u, swapped: None }
    }

    /// One power-iteration step on `w` (row-major, `rows` rows): `v = W^T u / |.|`,
    /// `u = W v / |.|`; returns `(v, sigma = u^T W v)`.
    pub fn power_step(&mut self, w: &[f32]) -> (Vec<f32>, f32) {
        let mut v = mat_t_vec(w, self.rows, &self.u);
        normalise_vec(&mut v);
        let mut wv = mat_vec(w, self.rows, &v);
        let sigma_unnormalised = wv.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt() as f32;
        normalise_vec(&mut wv);
        self.u = wv;
        // u^T W v with the new u equals |W v|.
        (v, sigma_unnormalised.max(1e-12))
    }

    /// Replaces the values of `w` by `w / sigma` after one power step; returns sigma.
    pub fn normalise(&mut self, w: &mut [f32]) -> f32 {
        assert!(self.swapped.is_none(), "spectral norm: normalise called twice without restore");
        let (v, sigma) = self.power_step(w);
        let raw = w.to_vec();
        w.iter_mut().for_each(|a| *a /= sigma);
        self.swapped = Some(Swap { raw, v, sigma });
        sigma
    }

    /// Puts the raw weight back into `w` and maps `grad` (with respect to `w / sigma`, possibly
    /// empty when no gradient was taken) to the gradient with respect to the raw weight.
    pub fn restore(&mut self, w: &mut [f32], grad: Option<&mut [f32]>) {
        let swap = self.swapped.take().expect("spectral norm: restore without normalise");
        w.copy_from_slice(&swap.raw);
        if let Some(g) = grad {
            let cols = g.len() / self.rows;
            // <G, W / sigma>
            let inner = g.iter().zip(&swap.raw).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / swap.sigma as f64;
            for (row, &ui) in g.chunks_exact_mut(cols).zip(&self.u) {
                for (gij, &vj) in row.iter_mut().zip(&swap.v) {
                    *gij = (*gij - inner as f32 * ui * vj) / swap.sigma;
                }
            }
        }
    }
}
