//! Actor-critic networks as typed dfdx modules, and the [`ActorCritic`] trait that the trainers use.
//!
//! A network maps a batch of observations to `(policy output, value)`. Shared or separate
//! actor/critic is only a choice of type: a shared trunk ends in a `SplitInto` of two heads; separate
//! networks are a `SplitInto` of two full MLPs.

use dfdx::nn::tensor_collection::TensorCollection;
use dfdx::prelude::*;
use glimpse::distributions::{builder::GaussianHead, Categorical, DiagGaussian};
use glimpse::nn::builders::{Dense, FastTanh};
use glimpse::rollout::PolicyStep;
use glimpse::validate::{self, SpaceMismatch};
use glimpse::Space;
use rand::Rng;

/// The module an architecture (a tuple of dfdx layer types) builds on the CPU in `f32`.
pub type Built<Arch> = <Arch as BuildOnDevice<Cpu, f32>>::Built;
/// The hidden width of [`DiscreteMlp`] and [`GaussianMlp`] (CleanRL's and SB3's default).
pub const HIDDEN: usize = 64;
/// A categorical policy over `A` actions with separate 64-64 tanh actor and critic MLPs.
pub type DiscreteMlp<const O: usize, const A: usize> = DiscretePolicy<Built<SeparateDiscrete<O, A, HIDDEN>>, A>;
/// A diagonal-Gaussian policy over `[f32; A]` with separate 64-64 tanh actor and critic MLPs.
pub type GaussianMlp<const O: usize, const A: usize> = GaussianPolicy<Built<SeparateGaussian<O, A, HIDDEN>>, A>;

/// The tape of a traced forward pass.
pub type Traced = OwnedTape<f32, Cpu>;
/// A batch of observations `(B, O)`.
pub type ObsBatch<const O: usize, T = NoneTape> = Tensor<(usize, Const<O>), f32, Cpu, T>;
/// A per-row vector `(B,)`.
pub type Column<T = NoneTape> = Tensor<(usize,), f32, Cpu, T>;
/// A per-row matrix `(B, N)`.
pub type Rows<const N: usize, T = NoneTape> = Tensor<(usize, Const<N>), f32, Cpu, T>;

/// Two hidden tanh layers of width `H` (the CleanRL/SB3 default MLP).
pub type Trunk<const I: usize, const H: usize> = (Dense<I, H>, FastTanh, Dense<H, H>, FastTanh);

/// Separate actor and critic MLPs for `A` discrete actions.
pub type SeparateDiscrete<const O: usize, const A: usize, const H: usize> =
    SplitInto<((Trunk<O, H>, Dense<H, A>), (Trunk<O, H>, Dense<H, 1>))>;
/// One shared trunk with a logits head and a value head.
pub type SharedDiscrete<const O: usize, const A: usize, const H: usize> =
    (Trunk<O, H>, SplitInto<(Dense<H, A>, Dense<H, 1>)>);
/// Separate actor (Gaussian head) and critic MLPs for an `A`-dimensional continuous action.
pub type SeparateGaussian<const O: usize, const A: usize, const H: usize> =
    SplitInto<((Trunk<O, H>, GaussianHead<H, A>), (Trunk<O, H>, Dense<H, 1>))>;
/// One shared trunk with a Gaussian head and a value head.
pub type SharedGaussian<const O: usize, const A: usize, const H: usize> =
    (Trunk<O, H>, SplitInto<(GaussianHead<H, A>, Dense<H, 1>)>);

/// The policy's part of an actor-critic network: its output without the critic's, for greedy
/// evaluation (half the work of a full forward pass with separate networks).
pub trait PolicyForward<X> {
    /// What the policy part outputs (logits, or `(mean, log_std)`).
    type Policy;
    /// The policy part's forward pass.
    fn policy_forward(&self, x: X) -> Self::Policy;
}

/// Separate networks: the first one.
impl<X, Actor: Module<X>, Critic> PolicyForward<X> for SplitInto<(Actor, Critic)>
where
    Actor::Error: std::fmt::Debug,
{
    type Policy = Actor::Output;
    fn policy_forward(&self, x: X) -> Actor::Output {
        self.0 .0.forward(x)
    }
}

/// A shared trunk: the trunk, then the first head.
impl<X, T: Module<X>, Head: Module<T::Output>, Value> PolicyForward<X> for (T, SplitInto<(Head, Value)>)
where
    T::Error: std::fmt::Debug,
    Head::Error: std::fmt::Debug,
{
    type Policy = Head::Output;
    fn policy_forward(&self, x: X) -> Head::Output {
        self.1 .0 .0.forward(self.0.forward(x))
    }
}

/// What a policy returns when acting on a batch of N observations.
pub type ActOutput<A> = PolicyStep<A>;

/// A traced evaluation of stored actions, for a loss.
pub struct Evaluation {
    /// log π(a|s), `(B,)`.
    pub log_probs: Column<Traced>,
    /// Policy entropy, `(B,)`.
    pub entropy: Column<Traced>,
    /// V(s), `(B,)`.
    pub values: Column<Traced>,
}

/// A policy + value network usable by the on-policy trainers.
pub trait ActorCritic<const O: usize> {
    /// The environment's action type.
    type Action: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// The dfdx module holding every parameter.
    type Net: TensorCollection<f32, Cpu> + Clone;
    /// Values per stored action.
    const ACT_DIM: usize;

    /// Checks that an env with these spaces fits the network: its observations have `O` values
    /// and its actions are what the policy outputs. The error says what differs.
    fn check_spaces(&self, observation: &Space, action: &Space) -> Result<(), SpaceMismatch>;

    /// The network.
    fn net(&self) -> &Self::Net;
    /// The network, mutably (for the optimizer).
    fn net_mut(&mut self) -> &mut Self::Net;
    /// Samples (or, when `greedy`, takes the mode of) actions for `obs` (flat `[N * O]`).
    fn act<R: Rng + ?Sized>(&self, obs: &[f32], greedy: bool, rng: &mut R) -> ActOutput<Self::Action>;
    /// The mode of the policy for each of `obs` (flat `[N * O]`), as env actions: what
    /// `act(obs, true, _).env_actions` gives, without the critic.
    fn greedy_actions(&self, obs: &[f32]) -> Vec<Self::Action>;
    /// Critic values of `obs` (flat `[N * O]`).
    fn values(&self, obs: &[f32]) -> Vec<f32>;
    /// Log-probs, entropies and values of stored `actions` in traced observations.
    fn evaluate(&self, obs: ObsBatch<O, Traced>, actions: &[f32]) -> Evaluation;
}

fn obs_batch<const O: usize>(dev: &Cpu, obs: &[f32]) -> ObsBatch<O> {
    assert_eq!(obs.len() % O, 0, "observation buffer is not a multiple of {O}");
    dev.tensor_from_vec(obs.to_vec(), (obs.len() / O, Const))
}

fn column<T: Tape<f32, Cpu>>(v: Rows<1, T>) -> Column<T> {
    let n = v.shape().0;
    v.reshape_like(&(n,))
}

/// A categorical policy over `A` actions on a network `M` that outputs `(logits, value)`.
#[derive(Debug, Clone)]
pub struct DiscretePolicy<M, const A: usize> {
    /// The network.
    pub net: M,
    dev: Cpu,
}

impl<M, const A: usize> DiscretePolicy<M, A> {
    /// Wraps a built network.
    pub fn new(net: M, dev: Cpu) -> Self {
        Self { net, dev }
    }

    /// Builds architecture `Arch` (e.g. [`SeparateDiscrete`]) with weights drawn from `seed`.
    pub fn build<Arch: BuildOnDevice<Cpu, f32, Built = M>>(seed: u64) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        Self { net: dev.build_module::<Arch, f32>(), dev }
    }
}

impl<const O: usize, const A: usize, M> ActorCritic<O> for DiscretePolicy<M, A>
where
    M: TensorCollection<f32, Cpu>
        + Clone
        + Module<ObsBatch<O>, Output = (Rows<A>, Rows<1>)>
        + Module<ObsBatch<O, Traced>, Output = (Rows<A, Traced>, Rows<1, Traced>)>
        + PolicyForward<ObsBatch<O>, Policy = Rows<A>>,
{
    type Action = usize;
    type Net = M;
    const ACT_DIM: usize = 1;

    fn check_spaces(&self, observation: &Space, action: &Space) -> Result<(), SpaceMismatch> {
        validate::discrete_spaces::<O, A>(observation, action)
    }

    fn net(&self) -> &M {
        &self.net
    }
    fn net_mut(&mut self) -> &mut M {
        &mut self.net
    }

    fn act<R: Rng + ?Sized>(&self, obs: &[f32], greedy: bool, rng: &mut R) -> ActOutput<usize> {
        let (logits, values) = self.net.forward(obs_batch::<O>(&self.dev, obs));
        let dist = Categorical::from_logits(logits);
        let env_actions = if greedy { dist.mode() } else { dist.sample(rng) };
        let log_probs = dist.log_prob(&env_actions).as_vec();
        ActOutput {
            actions: env_actions.iter().map(|&a| a as f32).collect(),
            env_actions,
            log_probs,
            values: values.as_vec(),
        }
    }

    fn greedy_actions(&self, obs: &[f32]) -> Vec<usize> {
        Categorical::from_logits(self.net.policy_forward(obs_batch::<O>(&self.dev, obs))).mode()
    }

    fn values(&self, obs: &[f32]) -> Vec<f32> {
        self.net.forward(obs_batch::<O>(&self.dev, obs)).1.as_vec()
    }

    fn evaluate(&self, obs: ObsBatch<O, Traced>, actions: &[f32]) -> Evaluation {
        let (logits, values) = self.net.forward(obs);
        let actions: Vec<usize> = actions.iter().map(|&a| a as usize).collect();
        let (log_probs, entropy) = Categorical::from_logits(logits).log_prob_and_entropy(&actions);
        Evaluation { log_probs, entropy, values: column(values) }
    }
}

/// A diagonal-Gaussian policy over `[f32; A]` actions on a network `M` that outputs
/// `((mean, log_std), value)`; actions sent to the env are clipped to `[low, high]`.
#[derive(Debug, Clone)]
pub struct GaussianPolicy<M, const A: usize> {
    /// The network.
    pub net: M,
    /// Lower action bounds.
    pub low: [f32; A],
    /// Upper action bounds.
    pub high: [f32; A],
    dev: Cpu,
}

impl<M, const A: usize> GaussianPolicy<M, A> {
    /// Wraps a built network with the env's action bounds.
    pub fn new(net: M, dev: Cpu, low: [f32; A], high: [f32; A]) -> Self {
        Self { net, low, high, dev }
    }

    /// Builds architecture `Arch` (e.g. [`SeparateGaussian`]) with weights drawn from `seed`,
    /// for actions in `[low, high]`.
    pub fn build<Arch: BuildOnDevice<Cpu, f32, Built = M>>(seed: u64, low: [f32; A], high: [f32; A]) -> Self {
        let dev = Cpu::seed_from_u64(seed);
        Self { net: dev.build_module::<Arch, f32>(), low, high, dev }
    }
}

/// The bounds of a box action space of `A` values, or why it is not one.
pub fn action_bounds<const A: usize>(action: &Space) -> Result<([f32; A], [f32; A]), SpaceMismatch> {
    let b = validate::box_actions::<A>(action)?;
    Ok((std::array::from_fn(|j| b.low[j]), std::array::from_fn(|j| b.high[j])))
}

impl<const O: usize, const A: usize, M> ActorCritic<O> for GaussianPolicy<M, A>
where
    M: TensorCollection<f32, Cpu>
        + Clone
        + Module<ObsBatch<O>, Output = ((Rows<A>, Rows<A>), Rows<1>)>
        + Module<ObsBatch<O, Traced>, Output = ((Rows<A, Traced>, Rows<A, Traced>), Rows<1, Traced>)>
        + PolicyForward<ObsBatch<O>, Policy = (Rows<A>, Rows<A>)>,
{
    type Action = [f32; A];
    type Net = M;
    const ACT_DIM: usize = A;

    fn check_spaces(&self, observation: &Space, action: &Space) -> Result<(), SpaceMismatch> {
        validate::observation_space::<O>(observation)?;
        validate::box_actions::<A>(action).map(|_| ())
    }

    fn net(&self) -> &M {
        &self.net
    }
    fn net_mut(&mut self) -> &mut M {
        &mut self.net
    }

    fn act<R: Rng + ?Sized>(&self, obs: &[f32], greedy: bool, rng: &mut R) -> ActOutput<[f32; A]> {
        let ((mean, log_std), values) = self.net.forward(obs_batch::<O>(&self.dev, obs));
        let dist = DiagGaussian::new(mean, log_std);
        let actions = if greedy { dist.mode() } else { dist.sample(rng) };
        let log_probs = dist.log_prob(&actions).as_vec();
        let env_actions =
            actions.chunks(A).map(|row| std::array::from_fn(|j| row[j].clamp(self.low[j], self.high[j]))).collect();
        ActOutput { env_actions, actions, log_probs, values: values.as_vec() }
    }

    fn greedy_actions(&self, obs: &[f32]) -> Vec<[f32; A]> {
        let (mean, log_std) = self.net.policy_forward(obs_batch::<O>(&self.dev, obs));
        let actions = DiagGaussian::new(mean, log_std).mode();
        actions.chunks(A).map(|row| std::array::from_fn(|j| row[j].clamp(self.low[j], self.high[j]))).collect()
    }

    fn values(&self, obs: &[f32]) -> Vec<f32> {
        self.net.forward(obs_batch::<O>(&self.dev, obs)).1.as_vec()
    }

    fn evaluate(&self, obs: ObsBatch<O, Traced>, actions: &[f32]) -> Evaluation {
        let ((mean, log_std), values) = self.net.forward(obs);
        let (log_probs, entropy) = DiagGaussian::new(mean, log_std).log_prob_and_entropy(actions);
        Evaluation { log_probs, entropy, values: column(values) }
    }
}
