//! Sampling pixel by pixel in raster order: the naive sampler (one full forward pass per pixel,
//! 784 for a digit) and the fast one of Ramachandran et al. (2017), which keeps every layer's
//! activations and computes, for each new pixel, only the one position that pixel's conditional
//! needs. Both run the same per-position arithmetic ([`Autoregressive::position`]) in the same
//! order, so for the same seed they draw bit-identical images.
//!
//! Each image has its own random stream (ChaCha12, stream `index` of the seed), so a batch can be
//! split over threads in any way without changing a single pixel.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;

/// A model of binary images in raster order, computed one position at a time for `n` images at
/// once. Activations are laid out position-major: `[position][image][channel]`.
pub trait Autoregressive: Sync {
    /// What one batch of images keeps between positions (the input and the cached activations).
    type State: Send;
    /// Image height and width.
    fn size(&self) -> (usize, usize);
    /// A zeroed state for `n` images.
    fn state(&self, n: usize) -> Self::State;
    /// Sets pixel `p` (raster index) of the `n` images to `values` (0 or 1).
    fn set_pixel(&self, state: &mut Self::State, p: usize, values: &[f32]);
    /// Computes every activation at position `p` from the input pixels before `p` and the
    /// activations cached at earlier positions, caches what later positions read, and returns
    /// the `n` logits of pixel `p`.
    fn position<'s>(&self, state: &'s mut Self::State, p: usize) -> &'s [f32];
}

/// How pixels are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A full forward pass over every position before each pixel.
    Naive,
    /// Only the new pixel's position, from the cached activations.
    Fast,
}

/// The generator of image `index` of a batch drawn with `seed`.
pub fn image_stream(seed: u64, index: u64) -> ChaCha12Rng {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Draws `n` images (values 0 or 1, one `h*w` image after another) from `model`, the images
/// numbered `first..first + n` in `seed`'s streams; pixels before `known` (raster index) are
/// copied from `given` (`n` images) instead of drawn: image completion.
fn draw_chunk<A: Autoregressive>(
    model: &A,
    method: Method,
    seed: u64,
    first: u64,
    given: Option<&[f32]>,
    known: usize,
    n: usize,
) -> Vec<f32> {
    let (h, w) = model.size();
    let pixels = h * w;
    let mut state = model.state(n);
    let mut rngs: Vec<ChaCha12Rng> = (0..n as u64).map(|i| image_stream(seed, first + i)).collect();
    let mut out = vec![0.0f32; n * pixels];
    let mut values = vec![0.0f32; n];
    for p in 0..pixels {
        let logits = match method {
            Method::Fast => model.position(&mut state, p),
            Method::Naive => {
                for q in 0..pixels {
                    model.position(&mut state, q);
                }
                model.position(&mut state, p)
            }
        };
        for (i, v) in values.iter_mut().enumerate() {
            let u: f32 = rngs[i].gen();
            *v = match given {
                Some(g) if p < known => g[i * pixels + p],
                _ => f32::from(u < sigmoid(logits[i])),
            };
        }
        model.set_pixel(&mut state, p, &values);
        for (i, &v) in values.iter().enumerate() {
            out[i * pixels + p] = v;
        }
    }
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Draws `n` images from `model` with `method`, split over the rayon pool in chunks of
/// `chunk` images (the images do not depend on the split). Values are 0 or 1, one image after another.
pub fn sample<A: Autoregressive>(model: &A, method: Method, n: usize, seed: u64, chunk: usize) -> Vec<f32> {
    complete(model, method, None, 0, n, seed, chunk)
}

/// Like [`sample`], with the first `known` pixels (raster order) of each image copied from
/// `given` (`n` images, values 0 or 1): the model completes the rest.
pub fn complete<A: Autoregressive>(
    model: &A,
    method: Method,
    given: Option<&[f32]>,
    known: usize,
    n: usize,
    seed: u64,
    chunk: usize,
) -> Vec<f32> {
    let (h, w) = model.size();
    let chunk = chunk.max(1);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let parts: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&s| {
            let m = chunk.min(n - s);
            let g = given.map(|g| &g[s * h * w..(s + m) * h * w]);
            draw_chunk(model, method, seed, s as u64, g, known, m)
        })
        .collect();
    parts.concat()
}

/// A convolution as the samplers compute it: at one position, for a block of images.
#[derive(Debug, Clone)]
pub struct PointConv {
    /// Input and output channels.
    pub chans: (usize, usize),
    /// Kernel taps as (row, column) offsets from the output position.
    pub offsets: Vec<(isize, isize)>,
    /// Weights `[tap][input channel][output channel]`.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

impl PointConv {
    /// From a `(O, I, K, K)` kernel (`weight`, row-major) restricted to `taps` (kernel indices).
    pub fn new(weight: &[f32], bias: Vec<f32>, (i, k): (usize, usize), taps: &[(usize, usize)]) -> Self {
        let o = bias.len();
        let c = (k / 2) as isize;
        let offsets = taps.iter().map(|&(a, b)| (a as isize - c, b as isize - c)).collect();
        let mut w = Vec::with_capacity(taps.len() * i * o);
        for &(a, b) in taps {
            for ic in 0..i {
                w.extend((0..o).map(|oc| weight[((oc * i + ic) * k + a) * k + b]));
            }
        }
        Self { chans: (i, o), offsets, weight: w, bias }
    }

    /// The output at position `(r, c)` of an `(h, w)` map for `n` images into `out` (`n × O`),
    /// reading the input through `input(q)` (the `n × I` block at position `q`).
    pub fn at<'a>(
        &self,
        (r, c): (usize, usize),
        (h, w): (usize, usize),
        n: usize,
        input: impl Fn(usize) -> &'a [f32],
        out: &mut [f32],
    ) {
        let (ci, co) = self.chans;
        for row in out[..n * co].chunks_mut(co) {
            row.copy_from_slice(&self.bias);
        }
        for (t, &(dr, dc)) in self.offsets.iter().enumerate() {
            let (rr, cc) = (r as isize + dr, c as isize + dc);
            if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                continue;
            }
            let block = input(rr as usize * w + cc as usize);
            let ws = &self.weight[t * ci * co..][..ci * co];
            for (x, row) in block[..n * ci].chunks(ci).zip(out.chunks_mut(co)) {
                for (&xv, w_ic) in x.iter().zip(ws.chunks(co)) {
                    row.iter_mut().zip(w_ic).for_each(|(o, &wv)| *o += wv * xv);
                }
            }
        }
    }
}

/// `max(0, x)` in place.
pub fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// The PixelCNN ([`crate::model::PixelCnnNet`]) in the samplers' per-position form.
#[derive(Debug, Clone)]
pub struct PixelCnnPositions {
    size: (usize, usize),
    input: PointConv,
    /// Per residual block: 1×1 in, masked 3×3, 1×1 out.
    blocks: Vec<[PointConv; 3]>,
    head: [PointConv; 2],
}

/// What [`PixelCnnPositions`] keeps between positions for `n` images.
#[derive(Debug, Clone)]
pub struct PixelCnnState {
    n: usize,
    /// The input pixels, `[position][image]`.
    x: Vec<f32>,
    /// Per block, the input of its masked 3×3 convolution, `[position][image][channel]`.
    cached: Vec<Vec<f32>>,
    /// The residual stream at the current position, and scratch blocks.
    stream: Vec<f32>,
    scratch: [Vec<f32>; 2],
    logits: Vec<f32>,
}

fn point_conv<const I: usize, const O: usize, const K: usize>(
    weight: &dfdx::prelude::Tensor<dfdx::prelude::Rank4<O, I, K, K>, f32, dfdx::prelude::Cpu>,
    bias: &dfdx::prelude::Tensor<dfdx::prelude::Rank1<O>, f32, dfdx::prelude::Cpu>,
    taps: &[(usize, usize)],
) -> PointConv {
    PointConv::new(&weight.as_vec(), bias.as_vec(), (I, K), taps)
}

impl PixelCnnPositions {
    /// The per-position form of `net` for `(height, width)` images.
    pub fn new<const C: usize, const H: usize, const L: usize>(
        net: &crate::model::PixelCnnNet<C, H, L>,
        size: (usize, usize),
    ) -> Self {
        use glimpse::nn::{MaskA, MaskB, MaskKind};
        let (first, blocks, (_, h1, _, h2)) = net;
        let one = [(0, 0)];
        let blocks = blocks
            .blocks
            .iter()
            .map(|block| {
                let (c1, m3, c2) = (&block.reduce, &block.masked, &block.expand);
                [
                    point_conv(&c1.weight, &c1.bias, &one),
                    point_conv(&m3.weight, &m3.bias, &MaskB::taps(3)),
                    point_conv(&c2.weight, &c2.bias, &one),
                ]
            })
            .collect();
        Self {
            size,
            input: point_conv(&first.weight, &first.bias, &MaskA::taps(7)),
            blocks,
            head: [point_conv(&h1.weight, &h1.bias, &one), point_conv(&h2.weight, &h2.bias, &one)],
        }
    }
}

impl Autoregressive for PixelCnnPositions {
    type State = PixelCnnState;

    fn size(&self) -> (usize, usize) {
        self.size
    }

    fn state(&self, n: usize) -> PixelCnnState {
        let pixels = self.size.0 * self.size.1;
        let c = self.input.chans.1;
        let widest = self.blocks.iter().flatten().chain(&self.head).map(|l| l.chans.1).max().unwrap_or(0).max(c);
        PixelCnnState {
            n,
            x: vec![0.0; pixels * n],
            cached: self.blocks.iter().map(|b| vec![0.0; pixels * b[1].chans.0 * n]).collect(),
            stream: vec![0.0; c * n],
            scratch: [vec![0.0; widest * n], vec![0.0; widest * n]],
            logits: vec![0.0; n],
        }
    }

    fn set_pixel(&self, state: &mut PixelCnnState, p: usize, values: &[f32]) {
        let n = state.n;
        state.x[p * n..][..n].copy_from_slice(values);
    }

    fn position<'s>(&self, s: &'s mut PixelCnnState, p: usize) -> &'s [f32] {
        let (size, n) = (self.size, s.n);
        let at = (p / size.1, p % size.1);
        let PixelCnnState { x, cached, stream, scratch: [t1, t2], logits, .. } = s;
        self.input.at(at, size, n, |q| &x[q * n..][..n], stream);
        for ([c1, m3, c2], cache) in self.blocks.iter().zip(cached.iter_mut()) {
            let width = c1.chans.0 * n;
            t1[..width].copy_from_slice(stream);
            relu(&mut t1[..width]);
            let hn = c1.chans.1 * n;
            let here = &mut cache[p * hn..][..hn];
            c1.at(at, size, n, |_| &t1[..], here);
            relu(here);
            m3.at(at, size, n, |q| &cache[q * hn..][..hn], t2);
            relu(&mut t2[..m3.chans.1 * n]);
            c2.at(at, size, n, |_| &t2[..], t1);
            stream.iter_mut().zip(&t1[..width]).for_each(|(a, b)| *a += b);
        }
        let [h1, h2] = &self.head;
        t1[..stream.len()].copy_from_slice(stream);
        relu(&mut t1[..stream.len()]);
        h1.at(at, size, n, |_| &t1[..], t2);
        relu(&mut t2[..h1.chans.1 * n]);
        h2.at(at, size, n, |_| &t2[..], logits);
        logits
    }
}

/// One gated layer in the samplers' per-position form.
#[derive(Debug, Clone)]
struct GatedLayerPositions {
    /// Vertical tanh and gate halves.
    v: [PointConv; 2],
    /// Horizontal tanh and gate halves.
    h: [PointConv; 2],
    /// Links from the vertical halves a row up.
    link: [PointConv; 2],
    out: PointConv,
}

impl GatedLayerPositions {
    fn new<const I: usize, const P: usize, const K: usize, HM: glimpse::nn::MaskKind>(
        l: &crate::gated::GatedLayer<I, P, K, HM, f32, dfdx::prelude::Cpu>,
    ) -> Self {
        use glimpse::nn::{MaskKind, RowAbove, VerticalStack};
        let (vt, ht, lt) = (VerticalStack::taps(K), HM::taps(K), RowAbove::taps(3));
        Self {
            v: [point_conv(&l.v_tanh.weight, &l.v_tanh.bias, &vt), point_conv(&l.v_gate.weight, &l.v_gate.bias, &vt)],
            h: [point_conv(&l.h_tanh.weight, &l.h_tanh.bias, &ht), point_conv(&l.h_gate.weight, &l.h_gate.bias, &ht)],
            link: [
                point_conv(&l.link_tanh.weight, &l.link_tanh.bias, &lt),
                point_conv(&l.link_gate.weight, &l.link_gate.bias, &lt),
            ],
            out: point_conv(&l.out.weight, &l.out.bias, &[(0, 0)]),
        }
    }
}

/// The Gated PixelCNN ([`crate::gated::GatedPixelCnnNet`]) in the samplers' per-position form:
/// the vertical stack of a row is computed once, when the row below starts, and the horizontal
/// stack once per pixel.
#[derive(Debug, Clone)]
pub struct GatedPositions {
    size: (usize, usize),
    layers: Vec<GatedLayerPositions>,
    head: [PointConv; 2],
}

/// What [`GatedPositions`] keeps for `n` images, per layer and `[position][image][channel]`.
#[derive(Debug, Clone)]
pub struct GatedState {
    n: usize,
    /// Per layer, its vertical input (the image for the first).
    v_in: Vec<Vec<f32>>,
    /// Per layer, its horizontal input (the image for the first), and the last layer's output.
    h_in: Vec<Vec<f32>>,
    /// Per layer, the vertical pre-activations (tanh half, gate half).
    v_pre: Vec<[Vec<f32>; 2]>,
    scratch: [Vec<f32>; 3],
    logits: Vec<f32>,
}

impl GatedPositions {
    /// The per-position form of `net` for `(height, width)` images.
    pub fn new<const P: usize, const L: usize>(
        net: &crate::gated::GatedPixelCnnNet<P, L, f32, dfdx::prelude::Cpu>,
        size: (usize, usize),
    ) -> Self {
        let mut layers = vec![GatedLayerPositions::new(&net.first)];
        layers.extend(net.layers.modules.iter().map(GatedLayerPositions::new));
        let (h1, h2) = &net.head;
        let one = [(0, 0)];
        Self { size, layers, head: [point_conv(&h1.weight, &h1.bias, &one), point_conv(&h2.weight, &h2.bias, &one)] }
    }

    /// The vertical stack of every layer along row `r`.
    fn vertical_row(&self, s: &mut GatedState, r: usize) {
        let (size, n) = (self.size, s.n);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (ci, p) = (layer.v[0].chans.0, layer.v[0].chans.1);
            for c in 0..size.1 {
                let q = r * size.1 + c;
                for half in 0..2 {
                    let (v_in, pre) = (&s.v_in[l], &mut s.v_pre[l][half][q * p * n..][..p * n]);
                    layer.v[half].at((r, c), size, n, |q| &v_in[q * ci * n..][..ci * n], pre);
                }
                if l < last {
                    let [a, b] = &s.v_pre[l];
                    let next = &mut s.v_in[l + 1][q * p * n..][..p * n];
                    gate(&a[q * p * n..][..p * n], &b[q * p * n..][..p * n], next);
                }
            }
        }
    }
}

/// `out = tanh(a) · sigmoid(b)`.
fn gate(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a.tanh() * sigmoid(b);
    }
}

impl Autoregressive for GatedPositions {
    type State = GatedState;

    fn size(&self) -> (usize, usize) {
        self.size
    }

    fn state(&self, n: usize) -> GatedState {
        let pixels = self.size.0 * self.size.1;
        let p = self.layers[0].out.chans.1;
        let mut h_in: Vec<Vec<f32>> = self.layers.iter().map(|l| vec![0.0; pixels * l.v[0].chans.0 * n]).collect();
        h_in.push(vec![0.0; pixels * p * n]);
        GatedState {
            n,
            v_in: self.layers.iter().map(|l| vec![0.0; pixels * l.v[0].chans.0 * n]).collect(),
            h_in,
            v_pre: self.layers.iter().map(|_| [vec![0.0; pixels * p * n], vec![0.0; pixels * p * n]]).collect(),
            scratch: [vec![0.0; p * n], vec![0.0; p * n], vec![0.0; p * n]],
            logits: vec![0.0; n],
        }
    }

    fn set_pixel(&self, s: &mut GatedState, p: usize, values: &[f32]) {
        let n = s.n;
        s.v_in[0][p * n..][..n].copy_from_slice(values);
        s.h_in[0][p * n..][..n].copy_from_slice(values);
    }

    fn position<'s>(&self, s: &'s mut GatedState, q: usize) -> &'s [f32] {
        let (size, n) = (self.size, s.n);
        let at = (q / size.1, q % size.1);
        if at.1 == 0 && at.0 > 0 {
            self.vertical_row(s, at.0 - 1);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let (ci, p) = (layer.h[0].chans.0, layer.h[0].chans.1);
            let [ha, hb, g] = &mut s.scratch;
            let (h_in, v_pre) = (&s.h_in[l], &s.v_pre[l]);
            for (half, pre) in [&mut *ha, &mut *hb].into_iter().enumerate() {
                layer.h[half].at(at, size, n, |q| &h_in[q * ci * n..][..ci * n], pre);
                // The link goes into `g` (free until the gate below).
                layer.link[half].at(at, size, n, |q| &v_pre[half][q * p * n..][..p * n], g);
                pre.iter_mut().zip(&g[..p * n]).for_each(|(a, b)| *a += b);
            }
            gate(ha, hb, g);
            let (before, after) = s.h_in.split_at_mut(l + 1);
            let out = &mut after[0][q * p * n..][..p * n];
            layer.out.at(at, size, n, |_| &g[..], out);
            if l > 0 {
                out.iter_mut().zip(&before[l][q * p * n..][..p * n]).for_each(|(o, h)| *o += h);
            }
        }
        let [h1, h2] = &self.head;
        let p = h1.chans.0;
        let [t1, t2, _] = &mut s.scratch;
        t1.copy_from_slice(&s.h_in[self.layers.len()][q * p * n..][..p * n]);
        relu(t1);
        h1.at(at, size, n, |_| &t1[..], t2);
        relu(t2);
        h2.at(at, size, n, |_| &t2[..], &mut s.logits);
        &s.logits
    }
}

/// One Row LSTM layer in the samplers' per-position form.
#[derive(Debug, Clone)]
struct RowLstmLayerPositions {
    /// Input-to-state convolutions of the input, gates input, forget, output, cell.
    input_to_state: [PointConv; 4],
    /// State-to-state convolutions of the hidden state a row up.
    state_to_state: [PointConv; 4],
    out: PointConv,
}

/// The Row LSTM PixelRNN ([`crate::rowlstm::RowLstmNet`]) in the samplers' per-position form:
/// each layer's hidden and cell states at a pixel come from its input there and left of it and
/// from the hidden states of the row above.
#[derive(Debug, Clone)]
pub struct RowLstmPositions {
    size: (usize, usize),
    first: PointConv,
    layers: Vec<RowLstmLayerPositions>,
    head: [PointConv; 2],
}

/// What [`RowLstmPositions`] keeps for `n` images, `[position][image][channel]`.
#[derive(Debug, Clone)]
pub struct RowLstmState {
    n: usize,
    x: Vec<f32>,
    /// Per layer, its input; then the last layer's output.
    inputs: Vec<Vec<f32>>,
    /// Per layer, the hidden and the cell states.
    hidden: Vec<Vec<f32>>,
    cells: Vec<Vec<f32>>,
    scratch: [Vec<f32>; 6],
    logits: Vec<f32>,
}

impl RowLstmPositions {
    /// The per-position form of `net` for `(height, width)` images.
    pub fn new<const C: usize, const H: usize, const L: usize>(
        net: &crate::rowlstm::RowLstmNet<C, H, L, f32, dfdx::prelude::Cpu>,
        size: (usize, usize),
    ) -> Self {
        use glimpse::nn::{CentreRow, HorizontalB, MaskA, MaskKind};
        let layers = net
            .layers
            .modules
            .iter()
            .map(|l| {
                let mut state_to_state = gates_of(&l.state_to_state, &CentreRow::taps(3));
                // The batch network convolves the previous row as a one-row image; here it is read a row up.
                for conv in &mut state_to_state {
                    conv.offsets.iter_mut().for_each(|(dr, _)| *dr -= 1);
                }
                RowLstmLayerPositions {
                    input_to_state: gates_of(&l.input_to_state, &HorizontalB::taps(3)),
                    state_to_state,
                    out: point_conv(&l.out.weight, &l.out.bias, &[(0, 0)]),
                }
            })
            .collect();
        let (h1, h2) = &net.head;
        Self {
            size,
            first: point_conv(&net.first.weight, &net.first.bias, &MaskA::taps(7)),
            layers,
            head: [point_conv(&h1.weight, &h1.bias, &[(0, 0)]), point_conv(&h2.weight, &h2.bias, &[(0, 0)])],
        }
    }
}

/// The four gates' convolutions of `g` restricted to `taps`.
fn gates_of<const I: usize, const H: usize, M>(
    g: &crate::rowlstm::Gates<I, H, M, f32, dfdx::prelude::Cpu>,
    taps: &[(usize, usize)],
) -> [PointConv; 4] {
    [&g.input, &g.forget, &g.output, &g.cell].map(|m| point_conv(&m.weight, &m.bias, taps))
}

impl Autoregressive for RowLstmPositions {
    type State = RowLstmState;

    fn size(&self) -> (usize, usize) {
        self.size
    }

    fn state(&self, n: usize) -> RowLstmState {
        let pixels = self.size.0 * self.size.1;
        let c = self.first.chans.1;
        let h = self.layers.first().map_or(0, |l| l.out.chans.0);
        let widest = c.max(h) * n;
        RowLstmState {
            n,
            x: vec![0.0; pixels * n],
            inputs: (0..=self.layers.len()).map(|_| vec![0.0; pixels * c * n]).collect(),
            hidden: self.layers.iter().map(|_| vec![0.0; pixels * h * n]).collect(),
            cells: self.layers.iter().map(|_| vec![0.0; pixels * h * n]).collect(),
            scratch: std::array::from_fn(|_| vec![0.0; widest]),
            logits: vec![0.0; n],
        }
    }

    fn set_pixel(&self, s: &mut RowLstmState, p: usize, values: &[f32]) {
        let n = s.n;
        s.x[p * n..][..n].copy_from_slice(values);
    }

    fn position<'s>(&self, s: &'s mut RowLstmState, p: usize) -> &'s [f32] {
        let (size, n) = (self.size, s.n);
        let at = (p / size.1, p % size.1);
        let c = self.first.chans.1;
        let x = &s.x;
        self.first.at(at, size, n, |q| &x[q * n..][..n], &mut s.inputs[0][p * c * n..][..c * n]);
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.out.chans.0;
            let (hn, cn) = (h * n, c * n);
            let [gi, gf, go, gg, t, _] = &mut s.scratch;
            let (input, hidden) = (&s.inputs[l], &s.hidden[l]);
            for (k, pre) in [&mut *gi, &mut *gf, &mut *go, &mut *gg].into_iter().enumerate() {
                layer.input_to_state[k].at(at, size, n, |q| &input[q * cn..][..cn], pre);
                layer.state_to_state[k].at(at, size, n, |q| &hidden[q * hn..][..hn], t);
                pre[..hn].iter_mut().zip(&t[..hn]).for_each(|(a, b)| *a += b);
            }
            let above = (at.0 > 0).then(|| p - size.1);
            let (cells, hidden) = (&mut s.cells[l], &mut s.hidden[l]);
            for j in 0..hn {
                let (i, f, o, g) = (sigmoid(gi[j]), sigmoid(gf[j]), sigmoid(go[j]), gg[j].tanh());
                let previous = above.map_or(0.0, |q| cells[q * hn + j]);
                let cell = f * previous + i * g;
                cells[p * hn + j] = cell;
                hidden[p * hn + j] = o * cell.tanh();
            }
            let (before, after) = s.inputs.split_at_mut(l + 1);
            let out = &mut after[0][p * cn..][..cn];
            layer.out.at(at, size, n, |_| &hidden[p * hn..][..hn], out);
            out.iter_mut().zip(&before[l][p * cn..][..cn]).for_each(|(o, x)| *o += x);
        }
        let [h1, h2] = &self.head;
        let [t1, t2, ..] = &mut s.scratch;
        t1[..c * n].copy_from_slice(&s.inputs[self.layers.len()][p * c * n..][..c * n]);
        relu(&mut t1[..c * n]);
        h1.at(at, size, n, |_| &t1[..], t2);
        relu(&mut t2[..h1.chans.1 * n]);
        h2.at(at, size, n, |_| &t2[..], &mut s.logits);
        &s.logits
    }
}
