//! LSTMCell and GRUCell: a step against hand-written reference equations, unrolled gradients
//! (backpropagation through time) against finite differences in f64, and learning a delayed-copy
//! memory task.

mod nn_util;

use dfdx::optim::Adam;
use dfdx::prelude::*;
use glimpse::nn::{builders, GRUCell, LSTMCell, LstmState};
use nn_util::*;

fn sig(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `w` is (gates*h, f) row-major: returns w·v for row block `gate`.
fn matvec(w: &[f64], gate: usize, h: usize, v: &[f64], j: usize) -> f64 {
    let f = v.len();
    (0..f).map(|k| w[(gate * h + j) * f + k] * v[k]).sum()
}

/// Reference LSTM over a sequence: xs (s, b, i), returns hs (s, b, h).
#[allow(clippy::too_many_arguments)]
fn lstm_reference(
    xs: &[f64],
    (s, b, i, h): (usize, usize, usize, usize),
    h0: &[f64],
    c0: &[f64],
    wih: &[f64],
    whh: &[f64],
    bias: &[f64],
) -> Vec<f64> {
    let mut hs = Vec::new();
    let (mut hp, mut cp) = (h0.to_vec(), c0.to_vec());
    for t in 0..s {
        let (mut hn, mut cn) = (vec![0.0; b * h], vec![0.0; b * h]);
        for bi in 0..b {
            let x = &xs[(t * b + bi) * i..][..i];
            let hv = &hp[bi * h..][..h];
            for j in 0..h {
                let pre = |g: usize| matvec(wih, g, h, x, j) + matvec(whh, g, h, hv, j) + bias[g * h + j];
                let (ig, fg, gg, og) = (sig(pre(0)), sig(pre(1)), pre(2).tanh(), sig(pre(3)));
                let c = fg * cp[bi * h + j] + ig * gg;
                cn[bi * h + j] = c;
                hn[bi * h + j] = og * c.tanh();
            }
        }
        hs.extend(&hn);
        hp = hn;
        cp = cn;
    }
    hs
}

/// Reference GRU over a sequence (PyTorch equations).
#[allow(clippy::too_many_arguments)]
fn gru_reference(
    xs: &[f64],
    (s, b, i, h): (usize, usize, usize, usize),
    h0: &[f64],
    wih: &[f64],
    whh: &[f64],
    bih: &[f64],
    bhh: &[f64],
) -> Vec<f64> {
    let mut hs = Vec::new();
    let mut hp = h0.to_vec();
    for t in 0..s {
        let mut hn = vec![0.0; b * h];
        for bi in 0..b {
            let x = &xs[(t * b + bi) * i..][..i];
            let hv = &hp[bi * h..][..h];
            for j in 0..h {
                let gi = |g: usize| matvec(wih, g, h, x, j) + bih[g * h + j];
                let gh = |g: usize| matvec(whh, g, h, hv, j) + bhh[g * h + j];
                let r = sig(gi(0) + gh(0));
                let z = sig(gi(1) + gh(1));
                let n = (gi(2) + r * gh(2)).tanh();
                hn[bi * h + j] = (1.0 - z) * n + z * hv[j];
            }
        }
        hs.extend(&hn);
        hp = hn;
    }
    hs
}

const S: usize = 3;
const B: usize = 2;
const I: usize = 3;
const H: usize = 4;

#[test]
fn lstm_matches_reference_and_finite_differences() {
    let dev = Cpu::seed_from_u64(3);
    let cell: LSTMCell<I, H, f64, Cpu> = dev.build_module::<builders::LSTMCell<I, H>, f64>();
    let xs = dev.tensor_from_vec(values(S * B * I, 1), (S, B, Const::<I>));
    let h0 = dev.tensor_from_vec(values(B * H, 2), (B, Const::<H>));
    let c0 = dev.tensor_from_vec(values(B * H, 3), (B, Const::<H>));
    let (xv, hv, cv) = (xs.as_vec(), h0.as_vec(), c0.as_vec());
    let (wih, whh, bias) = (cell.weight_ih.as_vec(), cell.weight_hh.as_vec(), cell.bias.as_vec());
    let dims = (S, B, I, H);

    // One step, untraced, against the reference equations (h and c).
    let x0 = dev.tensor_from_vec(xv[..B * I].to_vec(), (B, Const::<I>));
    let next = cell.try_step(x0, LstmState { h: h0.clone(), c: c0.clone() }).unwrap();
    let reference = lstm_reference(&xv[..B * I], (1, B, I, H), &hv, &cv, &wih, &whh, &bias);
    assert!(max_abs_diff(&next.h.as_vec(), &reference) <= 1e-12, "LSTM step h differs from reference");
    let hn = next.h.as_vec();
    let c_expected: Vec<f64> = (0..B * H)
        .map(|k| {
            let (bi, j) = (k / H, k % H);
            let x = &xv[bi * I..][..I];
            let hvv = &hv[bi * H..][..H];
            let pre = |g: usize| matvec(&wih, g, H, x, j) + matvec(&whh, g, H, hvv, j) + bias[g * H + j];
            sig(pre(1)) * cv[k] + sig(pre(0)) * pre(2).tanh()
        })
        .collect();
    assert!(max_abs_diff(&next.c.as_vec(), &c_expected) <= 1e-12, "LSTM step c differs from reference");
    assert!(hn.iter().all(|v| v.abs() < 1.0));

    // Unrolled sequence: forward and gradients of sum(hs * r).
    let (hs, last) = cell
        .try_unroll(xs.trace(Gradients::leaky()), LstmState { h: h0.trace(Gradients::leaky()), c: c0.clone() })
        .unwrap();
    let reference = lstm_reference(&xv, dims, &hv, &cv, &wih, &whh, &bias);
    assert!(max_abs_diff(&hs.as_vec(), &reference) <= 1e-12, "unrolled LSTM differs from reference");
    assert!(max_abs_diff(&last.h.as_vec(), &reference[(S - 1) * B * H..]) <= 1e-12);
    let r = values(reference.len(), 9);
    let rt = dev.tensor_from_vec(r.clone(), (S, B, Const::<H>));
    let g = (hs * rt).sum().backward();
    let loss = |xv: &[f64], hv: &[f64], cv: &[f64], wih: &[f64], whh: &[f64], bias: &[f64]| -> f64 {
        lstm_reference(xv, dims, hv, cv, wih, whh, bias).iter().zip(&r).map(|(a, b)| a * b).sum()
    };
    let errs = [
        check_fd(&xv, &g.get(&xs).as_vec(), 30, &mut |p| loss(p, &hv, &cv, &wih, &whh, &bias)),
        check_fd(&hv, &g.get(&h0).as_vec(), 30, &mut |p| loss(&xv, p, &cv, &wih, &whh, &bias)),
        check_fd(&cv, &g.get(&c0).as_vec(), 30, &mut |p| loss(&xv, &hv, p, &wih, &whh, &bias)),
        check_fd(&wih, &g.get(&cell.weight_ih).as_vec(), 40, &mut |p| loss(&xv, &hv, &cv, p, &whh, &bias)),
        check_fd(&whh, &g.get(&cell.weight_hh).as_vec(), 40, &mut |p| loss(&xv, &hv, &cv, &wih, p, &bias)),
        check_fd(&bias, &g.get(&cell.bias).as_vec(), 40, &mut |p| loss(&xv, &hv, &cv, &wih, &whh, p)),
    ];
    assert!(errs.iter().all(|e| *e <= 1e-6), "LSTM gradient errors (x, h0, c0, w_ih, w_hh, b): {errs:?}");
}

#[test]
fn gru_matches_reference_and_finite_differences() {
    let dev = Cpu::seed_from_u64(4);
    let cell: GRUCell<I, H, f64, Cpu> = dev.build_module::<builders::GRUCell<I, H>, f64>();
    let xs = dev.tensor_from_vec(values(S * B * I, 11), (S, B, Const::<I>));
    let h0 = dev.tensor_from_vec(values(B * H, 12), (B, Const::<H>));
    let (xv, hv) = (xs.as_vec(), h0.as_vec());
    let (wih, whh) = (cell.weight_ih.as_vec(), cell.weight_hh.as_vec());
    let (bih, bhh) = (cell.bias_ih.as_vec(), cell.bias_hh.as_vec());
    let dims = (S, B, I, H);

    let x0 = dev.tensor_from_vec(xv[..B * I].to_vec(), (B, Const::<I>));
    let h1 = cell.try_step(x0, h0.clone()).unwrap();
    let reference = gru_reference(&xv[..B * I], (1, B, I, H), &hv, &wih, &whh, &bih, &bhh);
    assert!(max_abs_diff(&h1.as_vec(), &reference) <= 1e-12, "GRU step differs from reference");

    let (hs, last) = cell.try_unroll(xs.trace(Gradients::leaky()), h0.trace(Gradients::leaky())).unwrap();
    let reference = gru_reference(&xv, dims, &hv, &wih, &whh, &bih, &bhh);
    assert!(max_abs_diff(&hs.as_vec(), &reference) <= 1e-12, "unrolled GRU differs from reference");
    assert!(max_abs_diff(&last.as_vec(), &reference[(S - 1) * B * H..]) <= 1e-12);
    let r = values(reference.len(), 19);
    let rt = dev.tensor_from_vec(r.clone(), (S, B, Const::<H>));
    let g = (hs * rt).sum().backward();
    let loss = |xv: &[f64], hv: &[f64], wih: &[f64], whh: &[f64], bih: &[f64], bhh: &[f64]| -> f64 {
        gru_reference(xv, dims, hv, wih, whh, bih, bhh).iter().zip(&r).map(|(a, b)| a * b).sum()
    };
    let errs = [
        check_fd(&xv, &g.get(&xs).as_vec(), 30, &mut |p| loss(p, &hv, &wih, &whh, &bih, &bhh)),
        check_fd(&hv, &g.get(&h0).as_vec(), 30, &mut |p| loss(&xv, p, &wih, &whh, &bih, &bhh)),
        check_fd(&wih, &g.get(&cell.weight_ih).as_vec(), 40, &mut |p| loss(&xv, &hv, p, &whh, &bih, &bhh)),
        check_fd(&whh, &g.get(&cell.weight_hh).as_vec(), 40, &mut |p| loss(&xv, &hv, &wih, p, &bih, &bhh)),
        check_fd(&bih, &g.get(&cell.bias_ih).as_vec(), 40, &mut |p| loss(&xv, &hv, &wih, &whh, p, &bhh)),
        check_fd(&bhh, &g.get(&cell.bias_hh).as_vec(), 40, &mut |p| loss(&xv, &hv, &wih, &whh, &bih, p)),
    ];
    assert!(errs.iter().all(|e| *e <= 1e-6), "GRU gradient errors (x, h0, w_ih, w_hh, b_ih, b_hh): {errs:?}");
}

const SYMBOLS: usize = 4;
const DELAY: usize = 2;
const STEPS: usize = 10;
const BATCH: usize = 32;
const HIDDEN: usize = 32;

/// Random symbol sequences (one-hot, time-major) and the targets `x[t - DELAY]` (one-hot).
#[allow(clippy::type_complexity)]
fn copy_batch(
    dev: &Cpu,
    seed: u64,
) -> (Tensor<(usize, usize, Const<SYMBOLS>), f32, Cpu>, Vec<usize>, Tensor<(usize, usize, Const<SYMBOLS>), f32, Cpu>) {
    let symbols: Vec<usize> =
        values(STEPS * BATCH, seed).iter().map(|v| ((v + 1.0) * 2.0) as usize % SYMBOLS).collect();
    let mut x = vec![0.0f32; STEPS * BATCH * SYMBOLS];
    let mut y = vec![0.0f32; STEPS * BATCH * SYMBOLS];
    for (k, &s) in symbols.iter().enumerate() {
        x[k * SYMBOLS + s] = 1.0;
        if k >= DELAY * BATCH {
            y[k * SYMBOLS + symbols[k - DELAY * BATCH]] = 1.0;
        } else {
            y[k * SYMBOLS..(k + 1) * SYMBOLS].fill(1.0 / SYMBOLS as f32);
        }
    }
    let shape = (STEPS, BATCH, Const::<SYMBOLS>);
    (dev.tensor_from_vec(x, shape), symbols, dev.tensor_from_vec(y, shape))
}

/// Accuracy of predicting `x[t - DELAY]` for `t >= DELAY`.
fn copy_accuracy(logits: &[f32], symbols: &[usize]) -> f32 {
    let mut correct = 0;
    for k in DELAY * BATCH..STEPS * BATCH {
        let row = &logits[k * SYMBOLS..(k + 1) * SYMBOLS];
        let pred = (0..SYMBOLS).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        correct += (pred == symbols[k - DELAY * BATCH]) as usize;
    }
    correct as f32 / ((STEPS - DELAY) * BATCH) as f32
}

macro_rules! learns_delayed_copy {
    ($name:ident, $cell:ty, $init:expr) => {
        #[test]
        fn $name() {
            let dev = Cpu::seed_from_u64(0);
            let mut model = dev.build_module::<($cell, Linear<HIDDEN, SYMBOLS>), f32>();
            let mut grads = model.alloc_grads();
            let mut opt = Adam::new(&model, AdamConfig { lr: 1e-2, ..Default::default() });
            let mut acc = 0.0;
            for step in 0..400u64 {
                let (x, symbols, y) = copy_batch(&dev, step);
                let init = $init(&dev);
                let (hs, _) = model.0.try_unroll(x.traced(grads), init).unwrap();
                let logits = model.1.forward(hs);
                acc = copy_accuracy(&logits.as_vec(), &symbols);
                let loss = cross_entropy_with_logits_loss(logits, y);
                grads = loss.backward();
                opt.update(&mut model, &grads).unwrap();
                model.zero_grads(&mut grads);
                if step % 20 == 19 && acc >= 0.98 {
                    break;
                }
            }
            assert!(acc >= 0.98, "{} reached only {acc} accuracy on the delayed copy task", stringify!($cell));
        }
    };
}

learns_delayed_copy!(lstm_learns_delayed_copy, builders::LSTMCell<SYMBOLS, HIDDEN>, |dev: &Cpu| LstmState::<usize, HIDDEN, f32>::zeros(dev, BATCH));
learns_delayed_copy!(gru_learns_delayed_copy, builders::GRUCell<SYMBOLS, HIDDEN>, |dev: &Cpu| -> Tensor<(usize, Const<HIDDEN>), f32, Cpu> { dev.zeros_like(&(BATCH, Const)) });

/// Large cells run their two projections' gradients side by side on two threads (one each), and
/// one after the other on one: the same bits either way.
#[test]
fn cell_gradients_do_not_depend_on_the_thread_count() {
    let dev = Cpu::seed_from_u64(9);
    let lstm: LSTMCell<256, 256, f32, Cpu> = dev.build_module::<builders::LSTMCell<256, 256>, f32>();
    let gru: GRUCell<256, 256, f32, Cpu> = dev.build_module::<builders::GRUCell<256, 256>, f32>();
    let x: Tensor<(usize, Const<256>), f32, Cpu> = dev.sample_normal_like(&(64, Const::<256>));
    let h: Tensor<(usize, Const<256>), f32, Cpu> = dev.sample_normal_like(&(64, Const::<256>));
    let c: Tensor<(usize, Const<256>), f32, Cpu> = dev.sample_normal_like(&(64, Const::<256>));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| {
            let s = lstm.try_step(x.leaky_trace(), LstmState { h: h.leaky_trace(), c: c.clone() }).unwrap();
            let g = s.h.square().sum().backward();
            let gl = [g.get(&lstm.weight_ih), g.get(&lstm.weight_hh)].map(|t| t.as_vec());
            let gx = [g.get(&x), g.get(&h)].map(|t| t.as_vec());
            let g = gru.try_step(x.leaky_trace(), h.leaky_trace()).unwrap().square().sum().backward();
            let gg = [g.get(&gru.weight_ih), g.get(&gru.weight_hh)].map(|t| t.as_vec());
            let gh = [g.get(&x), g.get(&h)].map(|t| t.as_vec());
            [gl, gx, gg, gh]
        })
    };
    let (one, two) = (run(1), run(2));
    for (a, b) in one.iter().flatten().zip(two.iter().flatten()) {
        assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
