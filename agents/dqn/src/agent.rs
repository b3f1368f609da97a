//! The DQN agent: online and target Q-networks, Adam, replay (uniform or prioritized) with n-step
//! returns, and its random stream. It acts, stores transitions and takes gradient steps; the
//! training loop ([`crate::train()`]) decides when.

use std::path::Path;

use dfdx::prelude::*;
use glimpse::checkpoint::{self, CheckpointError};
use glimpse::optim::{check_finite_params, copy_params, polyak_update, Adam, AdamConfig};
use glimpse::replay::{Batch, NStep, NStepState, PrioritizedReplay, ReplayBuffer};
use glimpse::run::Checkpoint;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::network::{self, Obs, QFunction};
use crate::{Config, Error, Loss};

/// Uniform or prioritized replay.
enum Replay {
    Uniform(ReplayBuffer),
    Prioritized(PrioritizedReplay),
}

impl Replay {
    fn len(&self) -> usize {
        match self {
            Replay::Uniform(b) => b.len(),
            Replay::Prioritized(p) => p.len(),
        }
    }
    fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        match self {
            Replay::Uniform(b) => b.save(path),
            Replay::Prioritized(p) => p.save(path),
        }
    }
    fn load(&mut self, path: &Path) -> Result<(), CheckpointError> {
        match self {
            Replay::Uniform(b) => b.load(path),
            Replay::Prioritized(p) => p.load(path),
        }
    }
    fn push(&mut self, o: &[f32], a: &[f32], r: f32, n: &[f32], t: bool, d: f32) {
        match self {
            Replay::Uniform(b) => b.push(o, a, r, n, t, d),
            Replay::Prioritized(p) => p.push(o, a, r, n, t, d),
        };
    }
}

/// A scalar loss carrying the tape of the online network.
type TracedLoss = Tensor<Rank0, f32, Cpu, OwnedTape<f32, Cpu>>;

/// Counters and random state saved in the checkpoint's `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Environment steps taken (all envs together).
    pub global_step: u64,
    /// Gradient steps taken.
    pub gradient_steps: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// The agent's random stream (exploration and replay sampling).
    pub rng: ChaCha8Rng,
}

/// What a checkpoint holds besides networks, optimizer, replay and [`TrainState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingState {
    /// Steps waiting for their n-step return.
    nstep: NStepState,
    /// Q(s, a) of the last trained batch (logged as a histogram at evaluations).
    last_q_values: Vec<f64>,
}

/// Loss, mean Q and gradient norm of one gradient step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainStats {
    /// The TD loss.
    pub loss: f32,
    /// Mean Q(s, a) over the batch.
    pub mean_q: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// A DQN agent: online and target networks, optimizer, replay, and counters.
///
/// The dfdx device's random generator is used only to initialise the networks; everything random
/// after that draws from `state.rng`, which checkpoints save.
pub struct Dqn<Q, const O: usize, const A: usize> {
    /// The settings.
    pub cfg: Config,
    /// The online Q-network.
    pub q: Q,
    /// The target network: an independent copy (own tensors), never traced.
    pub target: Q,
    /// The optimizer of `q`.
    pub opt: Adam<Q>,
    /// Counters and random state.
    pub state: TrainState,
    dev: Cpu,
    grads: Option<Gradients<f32, Cpu>>,
    replay: Replay,
    nstep: NStep,
    batch: Batch,
    last_q_values: Vec<f32>,
}

impl<Q: QFunction<O, A>, const O: usize, const A: usize> Dqn<Q, O, A> {
    /// A fresh agent; `seed` fixes the network initialisation, exploration and sampling. The
    /// config is validated and the replay buffer checked against the memory available first.
    pub fn new(cfg: Config, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        cfg.check_memory(O).map_err(Error::Config)?;
        let dev = Cpu::seed_from_u64(seed);
        let q = Q::build(&dev);
        // A separately built module, then a value copy: `clone()` would share tensor ids with `q`.
        let mut target = Q::build(&dev);
        copy_params(&mut target, &q);
        let opt = Adam::new(&q, AdamConfig { lr: cfg.learning_rate, ..Default::default() });
        let grads = Some(q.alloc_grads());
        let replay = if cfg.prioritized {
            Replay::Prioritized(PrioritizedReplay::new(cfg.buffer_size, O, 1, cfg.per_alpha))
        } else {
            Replay::Uniform(ReplayBuffer::new(cfg.buffer_size, O, 1))
        };
        let nstep = NStep::new(cfg.num_envs, cfg.n_step, cfg.gamma, O, 1);
        let state = TrainState {
            global_step: 0,
            gradient_steps: 0,
            episodes: 0,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5eed)),
        };
        Ok(Self {
            cfg,
            q,
            target,
            opt,
            state,
            dev,
            grads,
            replay,
            nstep,
            batch: Batch::default(),
            last_q_values: vec![],
        })
    }

    /// Number of stored transitions.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// Greedy actions for a batch of observations `[rows * O]`.
    pub fn greedy_actions(&self, obs: &[f32]) -> Vec<usize> {
        greedy_actions(&self.q, &self.dev, obs)
    }

    /// Epsilon-greedy actions for a batch of observations `[rows * O]` into `actions`.
    pub fn act(&mut self, obs: &[f32], epsilon: f64, actions: &mut Vec<usize>) {
        let rows = obs.len() / O;
        actions.clear();
        let explore: Vec<bool> = (0..rows).map(|_| self.state.rng.gen::<f64>() < epsilon).collect();
        let greedy = if explore.iter().all(|&e| e) { vec![] } else { self.greedy_actions(obs) };
        for (i, &e) in explore.iter().enumerate() {
            actions.push(if e { self.state.rng.gen_range(0..A) } else { greedy[i] });
        }
    }

    /// Records env `env`'s transition; `next_obs` is the true next observation (the final one
    /// when the episode ended).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        env: usize,
        obs: &[f32],
        action: usize,
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        truncated: bool,
    ) {
        let replay = &mut self.replay;
        self.nstep.push(env, obs, &[action as f32], reward, next_obs, terminated, truncated, |o, a, r, n, t, d| {
            replay.push(o, a, r, n, t, d)
        });
    }

    /// One gradient step on a sampled batch. `beta` is the importance-sampling exponent
    /// (ignored without prioritized replay).
    ///
    /// A non-finite loss or gradient stops before anything changes; parameters that are
    /// non-finite after the step (poisoned weights that a ReLU hides from the loss) are an error
    /// naming the tensor.
    pub fn train_step(&mut self, beta: f64) -> Result<TrainStats, Error> {
        let (gradient_step, env_step) = (self.state.gradient_steps, self.state.global_step);
        let grads = self.grads.take().unwrap_or_else(|| self.q.alloc_grads());
        let (loss, targets, q_sa_values) = self.td_loss(beta, grads);
        let loss_value = loss.array();
        if !loss_value.is_finite() {
            return Err(Error::NonFiniteLoss { loss: loss_value, gradient_step, env_step });
        }
        let mut grads = loss.backward();
        let max_norm = (self.cfg.max_grad_norm > 0.0).then_some(self.cfg.max_grad_norm);
        let update = self.opt.update(&mut self.q, &mut grads, max_norm);
        self.q.zero_grads(&mut grads);
        self.grads = Some(grads);
        let grad_norm = update.map_err(|e| Error::NonFiniteGradient { norm: e.norm, gradient_step, env_step })?;
        self.state.gradient_steps += 1;
        check_finite_params(&self.q).map_err(|source| Error::NonFiniteParams { source, gradient_step, env_step })?;

        if let Replay::Prioritized(per) = &mut self.replay {
            let td: Vec<f32> = q_sa_values.iter().zip(&targets).map(|(q, y)| q - y).collect();
            per.update_priorities(&self.batch.indices, &td);
        }
        let mean_q = q_sa_values.iter().sum::<f32>() / q_sa_values.len() as f32;
        self.last_q_values = q_sa_values;
        Ok(TrainStats { loss: loss_value, mean_q, grad_norm })
    }

    /// Samples a batch and builds the TD loss on a tape started from `grads`. Returns the loss,
    /// the TD targets and Q(s, a) of the batch.
    pub(crate) fn td_loss(&mut self, beta: f64, grads: Gradients<f32, Cpu>) -> (TracedLoss, Vec<f32>, Vec<f32>) {
        let b = self.cfg.batch_size;
        match &self.replay {
            Replay::Uniform(buf) => buf.sample(b, &mut self.state.rng, &mut self.batch),
            Replay::Prioritized(per) => per.sample(b, beta, &mut self.state.rng, &mut self.batch),
        }
        let batch = &self.batch;

        // TD target from the target network, computed without any tape: no gradient can reach it.
        let next_obs: Obs<O> = self.dev.tensor_from_vec(batch.next_obs.clone(), (b, Const::<O>));
        let next_target = self.target.q_values(next_obs.clone()).as_vec();
        let next_actions = if self.cfg.double_dqn {
            network::argmax_rows::<A>(&self.q.q_values(next_obs).as_vec())
        } else {
            network::argmax_rows::<A>(&next_target)
        };
        let bootstrap = batch.bootstrap();
        let targets: Vec<f32> =
            (0..b).map(|i| batch.rewards[i] + bootstrap[i] * next_target[i * A + next_actions[i]]).collect();

        let obs: Obs<O> = self.dev.tensor_from_vec(batch.obs.clone(), (b, Const::<O>));
        let actions = self.dev.tensor_from_vec(batch.discrete_actions(), (b,));
        let y = self.dev.tensor_from_vec(targets.clone(), (b,));
        let w = self.dev.tensor_from_vec(batch.weights.clone(), (b,));
        let q_sa = self.q.q_values(obs.trace(grads)).select(actions);
        let q_sa_values = q_sa.retaped::<NoneTape>().as_vec();
        let elementwise = match self.cfg.loss {
            Loss::Huber => q_sa.huber_error(y, 1.0),
            Loss::Mse => (q_sa - y).square(),
        };
        ((elementwise * w).mean(), targets, q_sa_values)
    }

    /// Updates the target network: a hard copy when `tau == 1`, else Polyak averaging.
    pub fn update_target(&mut self) {
        if self.cfg.tau >= 1.0 {
            copy_params(&mut self.target, &self.q);
        } else {
            polyak_update(&mut self.target, &self.q, self.cfg.tau);
        }
    }

    /// Q-values of the last trained batch (for histograms).
    pub fn last_q_values(&self) -> &[f32] {
        &self.last_q_values
    }
}

/// Networks, optimizer, replay (with priorities), counters and random state, pending n-step
/// transitions: everything that decides the agent's future.
impl<Q: QFunction<O, A>, const O: usize, const A: usize> Checkpoint for Dqn<Q, O, A> {
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        let pending = PendingState {
            nstep: self.nstep.save_state(),
            last_q_values: self.last_q_values.iter().map(|&x| x as f64).collect(),
        };
        checkpoint::save_weights(&self.q, &snap.join("q.safetensors"))?;
        checkpoint::save_weights(&self.target, &snap.join("target.safetensors"))?;
        self.opt.save(snap, "adam")?;
        self.replay.save(&snap.join("replay.bin"))?;
        checkpoint::save_json(&pending, &snap.join("pending.json"))?;
        checkpoint::save_json(&self.state, &snap.join("state.json"))
    }

    /// A truncated or corrupt file is an error naming it.
    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        let state: TrainState = checkpoint::load_json(&snap.join("state.json"))?;
        let pending: PendingState = checkpoint::load_json(&snap.join("pending.json"))?;
        // The snapshot's manifest was checked when it was opened, so a failure below is unlikely
        // to leave the agent half-loaded; n-step sizes are checked before anything changes.
        let mut nstep = self.nstep.clone();
        nstep
            .restore(&pending.nstep)
            .map_err(|message| CheckpointError::Corrupt { path: snap.join("pending.json"), message })?;
        checkpoint::load_weights(&mut self.q, &snap.join("q.safetensors"))?;
        checkpoint::load_weights(&mut self.target, &snap.join("target.safetensors"))?;
        self.opt.load(snap, "adam")?;
        self.replay.load(&snap.join("replay.bin"))?;
        self.state = state;
        self.nstep = nstep;
        self.last_q_values = pending.last_q_values.iter().map(|&x| x as f32).collect();
        Ok(())
    }
}

/// Greedy actions of `q` for a batch of observations `[rows * O]`.
pub fn greedy_actions<Q: QFunction<O, A>, const O: usize, const A: usize>(q: &Q, dev: &Cpu, obs: &[f32]) -> Vec<usize> {
    let rows = obs.len() / O;
    let x: Obs<O> = dev.tensor_from_vec(obs.to_vec(), (rows, Const::<O>));
    network::argmax_rows::<A>(&q.q_values(x).as_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MlpQ;

    type Net = MlpQ<3, 2, 8>;

    fn filled_agent(cfg: Config) -> Dqn<Net, 3, 2> {
        let mut agent = Dqn::<Net, 3, 2>::new(cfg, 4).unwrap();
        for t in 0..200 {
            let x = t as f32 / 200.0;
            agent.observe(0, &[x, -x, 1.0], t % 2, x, &[x + 0.01, -x, 1.0], t % 50 == 49, false);
        }
        agent
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glimpse-dqn-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_target_network_receives_no_gradient() {
        let mut agent = filled_agent(Config { batch_size: 16, ..Default::default() });
        let target_before = agent.target.0.weight.as_vec();
        let grads = agent.q.alloc_grads();
        let (loss, _, _) = agent.td_loss(0.4, grads);
        let grads = loss.backward();
        // The online network has gradients; the target network's tensors have no entry at all
        // (`Gradients::get` panics on a tensor it never saw).
        assert!(grads.get(&agent.q.0.weight).as_vec().iter().any(|&g| g != 0.0));
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&agent.target.0.weight)));
        let last = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&agent.target.4.weight)));
        assert!(first.is_err() && last.is_err(), "the target network got a gradient entry");
        // Training steps change the online network and leave the target alone until updated.
        for _ in 0..5 {
            agent.train_step(0.4).unwrap();
        }
        assert_eq!(agent.target.0.weight.as_vec(), target_before);
        assert_ne!(agent.q.0.weight.as_vec(), target_before);
        agent.update_target();
        assert_eq!(agent.target.0.weight.as_vec(), agent.q.0.weight.as_vec());
    }

    #[test]
    fn a_diverging_loss_is_an_error() {
        let mut agent = filled_agent(Config { batch_size: 8, ..Default::default() });
        agent.q.4.bias.copy_from(&[f32::NAN; 2]);
        let err = agent.train_step(0.4).unwrap_err();
        assert!(matches!(err, Error::NonFiniteLoss { .. }), "{err}");
        assert!(err.to_string().contains("NaN"));
    }

    #[test]
    fn a_nan_gradient_is_refused_and_changes_nothing() {
        let mut agent = filled_agent(Config { batch_size: 16, ..Default::default() });
        agent.train_step(0.4).unwrap();
        // A NaN weight in the middle layer: its unit's pre-activation is NaN, which the ReLU turns
        // into 0 (the loss stays finite), but the backward pass multiplies the NaN weight into
        // the first layer's gradient.
        let mut w = agent.q.2.weight.as_vec();
        w[3] = f32::NAN;
        agent.q.2.weight.copy_from(&w);
        let first_layer = agent.q.0.weight.as_vec();
        let t = agent.opt.t;
        let err = agent.train_step(0.4).unwrap_err();
        assert!(matches!(err, Error::NonFiniteGradient { gradient_step: 1, .. }), "{err}");
        assert!(err.to_string().contains("gradient norm is NaN at gradient step 1"), "{err}");
        assert_eq!(agent.q.0.weight.as_vec(), first_layer, "a refused step changed a weight");
        assert_eq!((agent.opt.t, agent.state.gradient_steps), (t, 1));
    }

    #[test]
    fn non_finite_parameters_are_an_error_naming_the_tensor() {
        let mut agent = filled_agent(Config { batch_size: 16, ..Default::default() });
        // A NaN first-layer weight: ReLU hides it from the loss and gives it a zero gradient, so
        // only a look at the parameters finds it.
        let mut w = agent.q.0.weight.as_vec();
        w[5] = f32::NAN;
        agent.q.0.weight.copy_from(&w);
        let err = agent.train_step(0.4).unwrap_err();
        assert!(matches!(err, Error::NonFiniteParams { .. }), "{err}");
        assert!(err.to_string().contains("0.weight"), "{err}");
    }

    #[test]
    fn checkpoint_round_trip_restores_weights_optimizer_and_counters() {
        let mut agent = filled_agent(Config { batch_size: 16, prioritized: true, ..Default::default() });
        for _ in 0..10 {
            agent.train_step(0.4).unwrap();
        }
        agent.state.global_step = 1234;
        let dir = temp("ckpt");
        agent.save(&dir).unwrap();
        let mut restored = Dqn::<Net, 3, 2>::new(agent.cfg.clone(), 99).unwrap();
        restored.load(&dir).unwrap();
        assert_eq!(restored.state, agent.state);
        assert_eq!(restored.q.2.weight.as_vec(), agent.q.2.weight.as_vec());
        assert_eq!(restored.target.4.bias.as_vec(), agent.target.4.bias.as_vec());
        assert_eq!(restored.opt.t, agent.opt.t);
        assert_eq!(restored.replay_len(), agent.replay_len());
        assert_eq!(restored.opt.moments().0 .0.weight.as_vec(), agent.opt.moments().0 .0.weight.as_vec());
        assert_eq!(restored.opt.moments().1 .4.weight.as_vec(), agent.opt.moments().1 .4.weight.as_vec());
        // Both agents now act identically (same weights and same random stream).
        let obs = [0.1, 0.2, 0.3, -0.5, 0.0, 1.0];
        let (mut a1, mut a2) = (vec![], vec![]);
        agent.act(&obs, 0.5, &mut a1);
        restored.act(&obs, 0.5, &mut a2);
        assert_eq!(a1, a2);
        // A truncated weights file is a clear error.
        let q_file = dir.join("q.safetensors");
        let bytes = std::fs::read(&q_file).unwrap();
        std::fs::write(&q_file, &bytes[..bytes.len() - 10]).unwrap();
        let err = restored.load(&dir).unwrap_err().to_string();
        assert!(err.contains("q.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
