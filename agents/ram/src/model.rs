//! The networks of the Recurrent Attention Model and one episode of looking:
//! [`GlimpseNet`] (what and where, combined), the core ([`RnnCore`], the paper's ReLU RNN, or
//! [`LstmCore`]), [`LocationNet`] (the mean of the Gaussian location policy), the baseline and
//! the classifier, together [`Ram`]; [`Ram::episode`] runs the glimpses of a batch.
//!
//! The location network and the baseline read the core state *as data*: they see its values,
//! and no gradient flows from them into the core (their layers' `forward_data` computes no input
//! gradient). So the classifier's cross-entropy trains the glimpse network, the core and the
//! classifier; REINFORCE trains only the location network, and the squared error only the
//! baseline. The sampled locations are data too.

use crate::sensor::Retina;
use dfdx::nn::{BuildModule, Module, ModuleVisitor, TensorCollection};
use dfdx::prelude::*;
use glimpse::nn::{dense_sum_relu, Dense, DenseUpTo, LSTMCell, LstmState, MergeTapes};
use rand::Rng;
use rand_distr::StandardNormal;

/// Units of each branch of the glimpse network (the image's "what" and the location's "where").
pub const BRANCH: usize = 128;
/// Units of the core state and of the combined glimpse feature.
pub const HIDDEN: usize = 256;
/// Units of the location network's hidden layer.
pub const LOCATION_HIDDEN: usize = 128;
/// Classes.
pub const CLASSES: usize = 10;
/// The largest glimpse (`scales · patch²` values) the image branch takes.
pub const MAX_GLIMPSE: usize = 1024;

/// A batch of `N` features per row, carrying tape `T`.
pub type Rows<const N: usize, T = NoneTape> = Tensor<(usize, Const<N>), f32, Cpu, T>;

/// A tape the model's ops can carry: [`NoneTape`] for evaluation, [`OwnedTape`] for training.
pub trait RamTape: Tape<f32, Cpu> + MergeTapes<f32, Self, Output = Self> {}
impl<T: Tape<f32, Cpu> + MergeTapes<f32, T, Output = T>> RamTape for T {}

/// The glimpse network: `g = relu(W_what relu(W_img ρ) + W_where relu(W_loc l))`.
#[derive(Debug, Clone)]
pub struct GlimpseNet<E: Dtype, D: Storage<E>> {
    /// Glimpse values to the "what" branch (a run-time width up to [`MAX_GLIMPSE`]).
    pub image: DenseUpTo<MAX_GLIMPSE, BRANCH, E, D>,
    /// The location to the "where" branch.
    pub place: Dense<2, BRANCH, E, D>,
    /// "What" to the combined feature.
    pub what: Dense<BRANCH, HIDDEN, E, D>,
    /// "Where" to the combined feature.
    pub place_out: Dense<BRANCH, HIDDEN, E, D>,
}

impl GlimpseNet<f32, Cpu> {
    /// The feature of glimpses `rho` (`(batch, width)`) read at locations `loc`.
    pub fn forward<T: RamTape>(&self, rho: Tensor<(usize, usize), f32, Cpu>, loc: Rows<2>) -> Rows<HIDDEN, T> {
        let what = self.image.forward_data(rho, T::default()).relu();
        let place = self.place.forward_data(loc, T::default()).relu();
        dense_sum_relu(&self.what, what, &self.place_out, place).expect("CPU allocation")
    }
}

/// The recurrent core: its state, one step, and its output.
pub trait Core: TensorCollection<f32, Cpu> + BuildModule<Cpu, f32> + Clone + Send + Sync + 'static {
    /// The state between glimpses.
    type State<T: RamTape>;
    /// The state before the first glimpse (zeros).
    fn initial<T: RamTape>(dev: &Cpu, batch: usize) -> Self::State<T>;
    /// The state after glimpse feature `g`.
    fn step<T: RamTape>(&self, g: Rows<HIDDEN, T>, state: Self::State<T>) -> Self::State<T>;
    /// The output `h` of a state, as data (its values, no tape).
    fn output_data<T: RamTape>(state: &Self::State<T>) -> Rows<HIDDEN>;
    /// The output `h` of a state, on its tape.
    fn output<T: RamTape>(state: Self::State<T>) -> Rows<HIDDEN, T>;
}

/// The paper's core: `h_t = relu(W_g g_t + W_h h_{t-1})`, `h_0 = 0` (biases on both, as two
/// `torch.nn.Linear`s).
#[derive(Debug, Clone)]
pub struct RnnCore<E: Dtype, D: Storage<E>> {
    /// Glimpse feature to state.
    pub input: Dense<HIDDEN, HIDDEN, E, D>,
    /// State to state.
    pub recurrent: Dense<HIDDEN, HIDDEN, E, D>,
}

impl Core for RnnCore<f32, Cpu> {
    type State<T: RamTape> = Rows<HIDDEN, T>;
    fn initial<T: RamTape>(dev: &Cpu, batch: usize) -> Rows<HIDDEN, T> {
        dev.zeros_like(&(batch, Const)).retaped()
    }
    fn step<T: RamTape>(&self, g: Rows<HIDDEN, T>, h: Rows<HIDDEN, T>) -> Rows<HIDDEN, T> {
        dense_sum_relu(&self.input, g, &self.recurrent, h).expect("CPU allocation")
    }
    fn output_data<T: RamTape>(h: &Rows<HIDDEN, T>) -> Rows<HIDDEN> {
        h.retaped()
    }
    fn output<T: RamTape>(h: Rows<HIDDEN, T>) -> Rows<HIDDEN, T> {
        h
    }
}

/// An LSTM core (`torch.nn.LSTMCell(256, 256)`), zero initial state.
#[derive(Debug, Clone)]
pub struct LstmCore<E: Dtype, D: Storage<E>> {
    /// The cell.
    pub cell: LSTMCell<HIDDEN, HIDDEN, E, D>,
}

impl Core for LstmCore<f32, Cpu> {
    type State<T: RamTape> = LstmState<usize, HIDDEN, f32, T>;
    fn initial<T: RamTape>(dev: &Cpu, batch: usize) -> Self::State<T> {
        let zero = LstmState::<usize, HIDDEN, f32>::zeros(dev, batch);
        LstmState { h: zero.h.retaped(), c: zero.c }
    }
    fn step<T: RamTape>(&self, g: Rows<HIDDEN, T>, state: Self::State<T>) -> Self::State<T> {
        self.cell.try_step(g, state).expect("CPU allocation")
    }
    fn output_data<T: RamTape>(state: &Self::State<T>) -> Rows<HIDDEN> {
        state.h.retaped()
    }
    fn output<T: RamTape>(state: Self::State<T>) -> Rows<HIDDEN, T> {
        state.h
    }
}

/// The location network: the policy's mean `tanh(W_2 relu(W_1 h))`, from the core state as data.
#[derive(Debug, Clone)]
pub struct LocationNet<E: Dtype, D: Storage<E>> {
    /// State to hidden.
    pub hidden: Dense<HIDDEN, LOCATION_HIDDEN, E, D>,
    /// Hidden to the mean location.
    pub mean: Dense<LOCATION_HIDDEN, 2, E, D>,
}

impl LocationNet<f32, Cpu> {
    /// The mean of the next location, in (-1, 1)², for core outputs `h` (data).
    pub fn forward<T: RamTape>(&self, h: Rows<HIDDEN>) -> Rows<2, T> {
        self.mean.forward(self.hidden.forward_data(h, T::default()).relu()).tanh()
    }
}

/// The Recurrent Attention Model with core `C`.
#[derive(Debug, Clone)]
pub struct Ram<C, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// Glimpse network.
    pub glimpse: GlimpseNet<E, D>,
    /// Core network.
    pub core: C,
    /// Location network (the policy's mean).
    pub location: LocationNet<E, D>,
    /// Baseline `b_t = w·h_t + c`, from the core state as data.
    pub baseline: Dense<HIDDEN, 1, E, D>,
    /// Classifier logits from the last core state.
    pub classifier: Dense<HIDDEN, CLASSES, E, D>,
}

/// How the locations after the first are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Looking {
    /// Sampled from the Gaussian policy `N(mean, std² I)` (training, and Monte-Carlo testing).
    Sampled {
        /// The policy's fixed standard deviation.
        std: f32,
    },
    /// The policy's mean (a deterministic test).
    Mean,
    /// Uniform in [-1, 1]², ignoring the policy (the random-locations ablation).
    Random,
}

/// What one episode of glimpses produced for a batch.
pub struct Episode<T> {
    /// Log-probabilities of the classes after the last glimpse, `(batch, 10)`.
    pub log_probs: Rows<CLASSES, T>,
    /// The policy's means at each step that chose a location (`glimpses − 1` of them; none when
    /// looking at random).
    pub means: Vec<Rows<2, T>>,
    /// The locations drawn at those steps, before clamping (batch × 2 each).
    pub drawn: Vec<Vec<f32>>,
    /// The baselines at those steps, `(batch, 1)`.
    pub baselines: Vec<Rows<1, T>>,
    /// Where each glimpse was read (clamped to [-1, 1]²), glimpse by glimpse.
    pub looked_at: Vec<Vec<[f32; 2]>>,
}

impl<C: Core> Ram<C, f32, Cpu> {
    /// A fresh model for glimpses of `retina`, every layer initialised as `torch.nn.Linear`
    /// (uniform in ±1/sqrt(fan-in)) from the device's generator.
    ///
    /// # Panics
    /// If the retina's glimpse is longer than [`MAX_GLIMPSE`] (configs are validated first).
    pub fn new(dev: &Cpu, retina: &Retina, rng: &mut impl Rng) -> Self {
        let mut model: Self = BuildModule::build(dev);
        model.glimpse.image.init_width(retina.len(), rng);
        model
    }

    /// Runs `glimpses` glimpses of `retina` over a batch of `h`×`w` images (`images` holds them
    /// one after another, values in [0, 1]). The first location is uniform in [-1, 1]²; each
    /// later one comes from the core state as `looking` says. Every random draw comes from `rng`.
    ///
    /// The layers copy their weights once for the whole episode ([`glimpse::nn::with_weight_reuse`]).
    #[allow(clippy::too_many_arguments)]
    pub fn episode<T: RamTape>(
        &self,
        images: &[f32],
        (h, w): (usize, usize),
        retina: &Retina,
        glimpses: usize,
        looking: Looking,
        rng: &mut impl Rng,
        dev: &Cpu,
    ) -> Episode<T> {
        glimpse::nn::with_weight_reuse(self, |model| {
            let batch = images.len() / (h * w);
            let uniform = |rng: &mut dyn rand::RngCore| -> Vec<[f32; 2]> {
                (0..batch).map(|_| [rng.gen_range(-1.0..=1.0), rng.gen_range(-1.0..=1.0)]).collect()
            };
            let mut loc = uniform(rng);
            let mut rho = vec![0.0; batch * retina.len()];
            let mut state = C::initial::<T>(dev, batch);
            let (mut means, mut drawn, mut baselines, mut looked_at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for t in 1..=glimpses {
                retina.read_batch(images, h, w, &loc, &mut rho);
                let rho_t = dev.tensor_from_vec(rho.clone(), (batch, retina.len()));
                let loc_t = dev.tensor_from_vec(loc.iter().flatten().copied().collect(), (batch, Const::<2>));
                let g = model.glimpse.forward::<T>(rho_t, loc_t);
                state = model.core.step(g, state);
                looked_at.push(loc.clone());
                if t == glimpses {
                    break;
                }
                loc = match looking {
                    Looking::Random => uniform(rng),
                    Looking::Sampled { .. } | Looking::Mean => {
                        let out = C::output_data(&state);
                        let mean = model.location.forward::<T>(out.clone());
                        baselines.push(model.baseline.forward_data(out, T::default()));
                        let mut next = mean.as_vec();
                        if let Looking::Sampled { std } = looking {
                            next.iter_mut().for_each(|v| *v += std * rng.sample::<f32, _>(StandardNormal));
                        }
                        means.push(mean);
                        let clamped = next.chunks_exact(2).map(|p| [p[0].clamp(-1.0, 1.0), p[1].clamp(-1.0, 1.0)]);
                        let clamped = clamped.collect();
                        drawn.push(next);
                        clamped
                    }
                };
            }
            let log_probs = model.classifier.forward(C::output(state)).log_softmax::<Axis<1>>();
            Episode { log_probs, means, drawn, baselines, looked_at }
        })
    }
}

/// Implements `TensorCollection<f32, Cpu>` for a struct of modules generic over `<E, D>`.
macro_rules! collection {
    ($name:ident { $($field:ident),+ }) => {
        impl TensorCollection<f32, Cpu> for $name<f32, Cpu> {
            type To<E2: Dtype, D2: Device<E2>> = $name<E2, D2>;
            fn iter_tensors<V: ModuleVisitor<Self, f32, Cpu>>(
                visitor: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    ($(Self::module(stringify!($field), |s| &s.$field, |s| &mut s.$field),)+),
                    |($($field,)+)| $name { $($field),+ },
                )
            }
        }
    };
}

collection!(GlimpseNet { image, place, what, place_out });
collection!(RnnCore { input, recurrent });
collection!(LstmCore { cell });
collection!(LocationNet { hidden, mean });

impl<C: TensorCollection<f32, Cpu>> TensorCollection<f32, Cpu> for Ram<C, f32, Cpu> {
    type To<E2: Dtype, D2: Device<E2>> = Ram<C::To<E2, D2>, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, f32, Cpu>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("glimpse", |s| &s.glimpse, |s| &mut s.glimpse),
                Self::module("core", |s| &s.core, |s| &mut s.core),
                Self::module("location", |s| &s.location, |s| &mut s.location),
                Self::module("baseline", |s| &s.baseline, |s| &mut s.baseline),
                Self::module("classifier", |s| &s.classifier, |s| &mut s.classifier),
            ),
            |(glimpse, core, location, baseline, classifier)| Ram { glimpse, core, location, baseline, classifier },
        )
    }
}
