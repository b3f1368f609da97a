//! Replay storage for off-policy agents: a preallocated ring buffer with contiguous per-field
//! arrays, n-step return aggregation across episode ends, and prioritized replay on a sum tree.
//!
//! Transitions are stored already aggregated: `(obs, action, return, next_obs, terminated, discount)`
//! where `return` is the discounted sum of up to n rewards and `discount` is `gamma^k` for the k
//! rewards summed. The TD target is then `return + discount * (1 - terminated) * V(next_obs)`
//! whatever n is, and a truncated episode still bootstraps from its last observation.

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{write_atomic, CheckpointError};

const MAGIC: &[u8; 16] = b"GLIMPSE-REPLAY1\n";
const PRIORITIES_MAGIC: &[u8; 16] = b"GLIMPSE-PRIOS01\n";

/// A batch of transitions sampled into flat row-major arrays, ready to become tensors.
///
/// Reuse one `Batch` across samples: sampling overwrites it without reallocating.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `[B * obs_dim]`.
    pub obs: Vec<f32>,
    /// `[B * act_dim]` (a discrete action is stored as its index).
    pub actions: Vec<f32>,
    /// `[B]` discounted n-step returns.
    pub rewards: Vec<f32>,
    /// `[B * obs_dim]`.
    pub next_obs: Vec<f32>,
    /// `[B]` 1.0 where the episode terminated (no bootstrap), else 0.0.
    pub terminated: Vec<f32>,
    /// `[B]` `gamma^k` for the k rewards summed into `rewards`.
    pub discounts: Vec<f32>,
    /// `[B]` the sampled slots, for [`PrioritizedReplay::update_priorities`].
    pub indices: Vec<usize>,
    /// `[B]` importance weights (all 1.0 for uniform sampling).
    pub weights: Vec<f32>,
}

impl Batch {
    /// Number of transitions in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the batch holds no transition.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The actions as indices (for a buffer of discrete actions, `act_dim == 1`).
    pub fn discrete_actions(&self) -> Vec<usize> {
        self.actions.iter().map(|&a| a as usize).collect()
    }

    /// The TD bootstrap factor per transition: `discount * (1 - terminated)`.
    pub fn bootstrap(&self) -> Vec<f32> {
        self.discounts.iter().zip(&self.terminated).map(|(d, t)| d * (1.0 - t)).collect()
    }

    fn resize(&mut self, b: usize, obs_dim: usize, act_dim: usize) {
        self.obs.resize(b * obs_dim, 0.0);
        self.next_obs.resize(b * obs_dim, 0.0);
        self.actions.resize(b * act_dim, 0.0);
        self.rewards.resize(b, 0.0);
        self.terminated.resize(b, 0.0);
        self.discounts.resize(b, 0.0);
        self.indices.resize(b, 0);
        self.weights.resize(b, 1.0);
    }
}

/// A fixed-capacity ring buffer of transitions; the oldest is overwritten when full.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    capacity: usize,
    obs_dim: usize,
    act_dim: usize,
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    terminated: Vec<f32>,
    discounts: Vec<f32>,
    next: usize,
    len: usize,
}

impl ReplayBuffer {
    /// Allocates room for `capacity` transitions up front.
    ///
    /// # Panics
    /// If `capacity`, `obs_dim` or `act_dim` is zero (a programming error, not bad data).
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        assert!(capacity > 0 && obs_dim > 0 && act_dim > 0, "replay buffer sizes must be positive");
        Self {
            capacity,
            obs_dim,
            act_dim,
            obs: vec![0.0; capacity * obs_dim],
            next_obs: vec![0.0; capacity * obs_dim],
            actions: vec![0.0; capacity * act_dim],
            rewards: vec![0.0; capacity],
            terminated: vec![0.0; capacity],
            discounts: vec![0.0; capacity],
            next: 0,
            len: 0,
        }
    }

    /// Number of stored transitions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of transitions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values per observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Values per action.
    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Bytes held by the preallocated arrays.
    pub fn memory_bytes(&self) -> usize {
        4 * (self.obs.len()
            + self.next_obs.len()
            + self.actions.len()
            + self.rewards.len()
            + self.terminated.len()
            + self.discounts.len())
    }

    /// Stores one transition in O(1) and returns its slot.
    ///
    /// # Panics
    /// If `obs`, `next_obs` or `action` has the wrong length.
    pub fn push(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        discount: f32,
    ) -> usize {
        let (i, o, a) = (self.next, self.obs_dim, self.act_dim);
        self.obs[i * o..(i + 1) * o].copy_from_slice(obs);
        self.next_obs[i * o..(i + 1) * o].copy_from_slice(next_obs);
        self.actions[i * a..(i + 1) * a].copy_from_slice(action);
        self.rewards[i] = reward;
        self.terminated[i] = if terminated { 1.0 } else { 0.0 };
        self.discounts[i] = discount;
        self.next = (i + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
        i
    }

    /// Samples `batch_size` transitions uniformly with replacement into `out`.
    ///
    /// # Panics
    /// If the buffer is empty.
    pub fn sample<R: Rng>(&self, batch_size: usize, rng: &mut R, out: &mut Batch) {
        assert!(self.len > 0, "cannot sample from an empty replay buffer");
        out.resize(batch_size, self.obs_dim, self.act_dim);
        for k in 0..batch_size {
            out.indices[k] = rng.gen_range(0..self.len);
        }
        out.weights.fill(1.0);
        self.gather(out);
    }

    /// Saves the buffer (sizes, ring position and every array) to a binary file, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut bytes = Vec::with_capacity(16 + 40 + self.memory_bytes());
        bytes.extend_from_slice(MAGIC);
        for v in [self.capacity, self.obs_dim, self.act_dim, self.next, self.len] {
            bytes.extend_from_slice(&(v as u64).to_le_bytes());
        }
        for field in self.fields() {
            for x in field {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        write_atomic(path, &bytes).map_err(|source| CheckpointError::Io { path: path.into(), source })
    }

    /// Loads a buffer written by [`save`](ReplayBuffer::save); its sizes must match this buffer's.
    pub fn load(&mut self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.into(), source })?;
        let corrupt = |message: String| CheckpointError::Corrupt { path: path.into(), message };
        if bytes.len() < 56 || &bytes[..16] != MAGIC {
            return Err(corrupt("not a replay buffer file (bad header)".into()));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes")) as usize;
        let (capacity, obs_dim, act_dim, next, len) = (word(0), word(1), word(2), word(3), word(4));
        if (capacity, obs_dim, act_dim) != (self.capacity, self.obs_dim, self.act_dim) {
            return Err(corrupt(format!(
                "saved buffer has capacity {capacity}, obs_dim {obs_dim}, act_dim {act_dim}; expected {}, {}, {}",
                self.capacity, self.obs_dim, self.act_dim
            )));
        }
        if next >= capacity || len > capacity || bytes.len() != 56 + self.memory_bytes() {
            return Err(corrupt(format!("{} bytes, expected {} (truncated?)", bytes.len(), 56 + self.memory_bytes())));
        }
        let mut floats = bytes[56..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
        for field in self.fields_mut() {
            for x in field.iter_mut() {
                *x = floats.next().expect("length checked above");
            }
        }
        (self.next, self.len) = (next, len);
        Ok(())
    }

    fn fields(&self) -> [&[f32]; 6] {
        [&self.obs, &self.next_obs, &self.actions, &self.rewards, &self.terminated, &self.discounts]
    }

    fn fields_mut(&mut self) -> [&mut Vec<f32>; 6] {
        [
            &mut self.obs,
            &mut self.next_obs,
            &mut self.actions,
            &mut self.rewards,
            &mut self.terminated,
            &mut self.discounts,
        ]
    }

    /// Copies the transitions at `out.indices` into the batch's arrays.
    fn gather(&self, out: &mut Batch) {
        let (o, a) = (self.obs_dim, self.act_dim);
        for (k, &i) in out.indices.iter().enumerate() {
            out.obs[k * o..(k + 1) * o].copy_from_slice(&self.obs[i * o..(i + 1) * o]);
            out.next_obs[k * o..(k + 1) * o].copy_from_slice(&self.next_obs[i * o..(i + 1) * o]);
            out.actions[k * a..(k + 1) * a].copy_from_slice(&self.actions[i * a..(i + 1) * a]);
            out.rewards[k] = self.rewards[i];
            out.terminated[k] = self.terminated[i];
            out.discounts[k] = self.discounts[i];
        }
    }
}

/// Turns per-step transitions of several parallel environments into n-step transitions.
///
/// Each environment keeps its last n steps. Once n are pending, the oldest leaves with the
/// discounted sum of the n rewards and the newest `next_obs`. When an episode ends (terminated
/// or truncated) every pending step leaves at once with the rewards up to the end: a terminated
/// episode stores `terminated = true` (no bootstrap), a truncated one bootstraps from the final
/// observation with `gamma^k`.
#[derive(Debug, Clone)]
pub struct NStep {
    n: usize,
    gamma: f32,
    obs_dim: usize,
    act_dim: usize,
    /// Per env: ring of pending (obs, action, reward).
    obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    start: Vec<usize>,
    count: Vec<usize>,
}

impl NStep {
    /// Pending storage for `num_envs` environments; `n >= 1` (n = 1 is plain one-step TD).
    pub fn new(num_envs: usize, n: usize, gamma: f32, obs_dim: usize, act_dim: usize) -> Self {
        assert!(n >= 1 && num_envs >= 1, "n-step needs n >= 1 and at least one env");
        Self {
            n,
            gamma,
            obs_dim,
            act_dim,
            obs: vec![0.0; num_envs * n * obs_dim],
            actions: vec![0.0; num_envs * n * act_dim],
            rewards: vec![0.0; num_envs * n],
            start: vec![0; num_envs],
            count: vec![0; num_envs],
        }
    }

    /// Records env `env`'s step `(obs, action, reward) -> next_obs` and stores every transition
    /// that is complete into `buffer`. For a step that ended the episode, `next_obs` must be the
    /// episode's final observation (not the reset one). Returns the number stored.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        env: usize,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        truncated: bool,
        mut store: impl FnMut(&[f32], &[f32], f32, &[f32], bool, f32),
    ) -> usize {
        let (n, o, a) = (self.n, self.obs_dim, self.act_dim);
        let slot = env * n + (self.start[env] + self.count[env]) % n;
        self.obs[slot * o..(slot + 1) * o].copy_from_slice(obs);
        self.actions[slot * a..(slot + 1) * a].copy_from_slice(action);
        self.rewards[slot] = reward;
        self.count[env] += 1;

        let mut stored = 0;
        let mut emit = |this: &mut Self, terminated: bool| {
            let c = this.count[env];
            let first = env * n + this.start[env];
            let (mut ret, mut discount) = (0.0f32, 1.0f32);
            for k in 0..c {
                ret += discount * this.rewards[env * n + (this.start[env] + k) % n];
                discount *= this.gamma;
            }
            store(
                &this.obs[first * o..(first + 1) * o],
                &this.actions[first * a..(first + 1) * a],
                ret,
                next_obs,
                terminated,
                discount,
            );
            this.start[env] = (this.start[env] + 1) % n;
            this.count[env] -= 1;
            stored += 1;
        };
        if terminated || truncated {
            while self.count[env] > 0 {
                emit(self, terminated);
            }
            self.start[env] = 0;
        } else if self.count[env] == n {
            emit(self, false);
        }
        stored
    }

    /// Forgets every pending step (e.g. after an external reset).
    pub fn clear(&mut self) {
        self.count.fill(0);
        self.start.fill(0);
    }

    /// The pending steps, for a checkpoint (see [`restore`](NStep::restore)).
    pub fn save_state(&self) -> NStepState {
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect();
        NStepState {
            n: self.n,
            gamma: self.gamma as f64,
            obs_dim: self.obs_dim,
            act_dim: self.act_dim,
            obs: widen(&self.obs),
            actions: widen(&self.actions),
            rewards: widen(&self.rewards),
            start: self.start.clone(),
            count: self.count.clone(),
        }
    }

    /// Restores pending steps saved by [`save_state`](NStep::save_state) from an `NStep` built
    /// with the same sizes; anything else is an error saying what differs.
    pub fn restore(&mut self, state: &NStepState) -> Result<(), String> {
        let mine = (self.n, self.gamma as f64, self.obs_dim, self.act_dim, self.start.len());
        let saved = (state.n, state.gamma, state.obs_dim, state.act_dim, state.start.len());
        if mine != saved {
            return Err(format!(
                "saved n-step state has (n, gamma, obs_dim, act_dim, envs) = {saved:?}, expected {mine:?}"
            ));
        }
        let lengths_ok = state.obs.len() == self.obs.len()
            && state.actions.len() == self.actions.len()
            && state.rewards.len() == self.rewards.len()
            && state.count.len() == self.count.len();
        if !lengths_ok {
            return Err("saved n-step state has arrays of the wrong length".into());
        }
        // Between two pushes a ring holds at most n - 1 pending steps (the n-th completes a
        // transition and is emitted at once), and its start is an index into the ring.
        if let Some((env, (s, c))) =
            state.start.iter().zip(&state.count).enumerate().find(|(_, (&s, &c))| s >= self.n || c >= self.n)
        {
            return Err(format!(
                "saved n-step state of env {env} has start {s} and count {c}, both must be below n = {}",
                self.n
            ));
        }
        let narrow = |dst: &mut Vec<f32>, src: &[f64]| dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x as f32);
        narrow(&mut self.obs, &state.obs);
        narrow(&mut self.actions, &state.actions);
        narrow(&mut self.rewards, &state.rewards);
        self.start.clone_from(&state.start);
        self.count.clone_from(&state.count);
        Ok(())
    }
}

/// The pending steps of an [`NStep`] (f32 values widened to f64, exact in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NStepState {
    /// Steps summed per transition.
    pub n: usize,
    /// Discount.
    pub gamma: f64,
    /// Values per observation.
    pub obs_dim: usize,
    /// Values per action.
    pub act_dim: usize,
    /// Per env, a ring of n observations.
    pub obs: Vec<f64>,
    /// Per env, a ring of n actions.
    pub actions: Vec<f64>,
    /// Per env, a ring of n rewards.
    pub rewards: Vec<f64>,
    /// Per env, the ring position of the oldest pending step.
    pub start: Vec<usize>,
    /// Per env, the number of pending steps.
    pub count: Vec<usize>,
}

/// A binary tree over `capacity` non-negative priorities giving sums over prefixes in O(log n).
#[derive(Debug, Clone)]
pub struct SumTree {
    leaves: usize,
    sums: Vec<f64>,
    mins: Vec<f64>,
}

impl SumTree {
    /// A tree of `capacity` zero priorities.
    pub fn new(capacity: usize) -> Self {
        let leaves = capacity.max(1).next_power_of_two();
        Self { leaves, sums: vec![0.0; 2 * leaves], mins: vec![f64::INFINITY; 2 * leaves] }
    }

    /// Sets the priority of slot `i`.
    pub fn set(&mut self, i: usize, priority: f64) {
        debug_assert!(priority >= 0.0 && priority.is_finite());
        let mut node = i + self.leaves;
        self.sums[node] = priority;
        self.mins[node] = priority;
        while node > 1 {
            node /= 2;
            self.sums[node] = self.sums[2 * node] + self.sums[2 * node + 1];
            self.mins[node] = self.mins[2 * node].min(self.mins[2 * node + 1]);
        }
    }

    /// The priority of slot `i`.
    pub fn get(&self, i: usize) -> f64 {
        self.sums[i + self.leaves]
    }

    /// Sum of all priorities.
    pub fn total(&self) -> f64 {
        self.sums[1]
    }

    /// Smallest priority among the slots that were set.
    pub fn min(&self) -> f64 {
        self.mins[1]
    }

    /// Sum of the priorities of slots `0..i`.
    pub fn prefix_sum(&self, i: usize) -> f64 {
        // Walk up from leaf i: every left sibling of the path lies entirely before i.
        let mut node = i + self.leaves;
        let mut sum = 0.0;
        while node > 1 {
            if node % 2 == 1 {
                sum += self.sums[node - 1];
            }
            node /= 2;
        }
        sum
    }

    /// The slot `i` with `prefix_sum(i) <= mass < prefix_sum(i + 1)` (clamped to the last positive slot).
    pub fn find(&self, mut mass: f64) -> usize {
        let mut node = 1;
        while node < self.leaves {
            let left = 2 * node;
            if mass < self.sums[left] || self.sums[left + 1] <= 0.0 {
                node = left;
            } else {
                mass -= self.sums[left];
                node = left + 1;
            }
        }
        node - self.leaves
    }
}

/// Prioritized experience replay (Schaul et al. 2016, proportional variant).
///
/// Slot i is drawn with probability `p_i^alpha / sum_j p_j^alpha`; new transitions get the largest
/// priority seen so far. Importance weights `(N * P(i))^-beta / max_j (N * P(j))^-beta` correct the bias.
#[derive(Debug, Clone)]
pub struct PrioritizedReplay {
    /// The transitions.
    pub buffer: ReplayBuffer,
    tree: SumTree,
    alpha: f64,
    epsilon: f64,
    max_priority: f64,
}

impl PrioritizedReplay {
    /// A prioritized buffer; `alpha` = 0 gives uniform sampling, 1 fully proportional.
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize, alpha: f64) -> Self {
        Self {
            buffer: ReplayBuffer::new(capacity, obs_dim, act_dim),
            tree: SumTree::new(capacity),
            alpha,
            epsilon: 1e-6,
            max_priority: 1.0,
        }
    }

    /// Number of stored transitions.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Stores a transition with the largest priority so far.
    pub fn push(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminated: bool,
        discount: f32,
    ) -> usize {
        let i = self.buffer.push(obs, action, reward, next_obs, terminated, discount);
        self.tree.set(i, self.max_priority.powf(self.alpha));
        i
    }

    /// The priority tree (sampling weights `p^alpha`).
    pub fn tree(&self) -> &SumTree {
        &self.tree
    }

    /// Samples `batch_size` transitions proportionally to priority (stratified over equal slices of
    /// the total), filling `out.weights` with importance weights for exponent `beta`.
    pub fn sample<R: Rng>(&self, batch_size: usize, beta: f64, rng: &mut R, out: &mut Batch) {
        assert!(!self.is_empty(), "cannot sample from an empty replay buffer");
        let b = &self.buffer;
        out.resize(batch_size, b.obs_dim, b.act_dim);
        let total = self.tree.total();
        let segment = total / batch_size as f64;
        let n = b.len() as f64;
        let max_weight = (n * self.tree.min() / total).powf(-beta);
        for k in 0..batch_size {
            let mass = (segment * (k as f64 + rng.gen::<f64>())).min(total * (1.0 - 1e-12));
            let i = self.tree.find(mass).min(b.len() - 1);
            out.indices[k] = i;
            let p = self.tree.get(i) / total;
            out.weights[k] = ((n * p).powf(-beta) / max_weight) as f32;
        }
        b.gather(out);
    }

    /// Where [`save`](PrioritizedReplay::save) puts the priorities: `<path>.priorities`.
    pub fn priorities_path(path: &Path) -> std::path::PathBuf {
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".priorities");
        path.with_file_name(name)
    }

    /// Saves the transitions to `path` (see [`ReplayBuffer::save`]) and, to
    /// [`priorities_path`](PrioritizedReplay::priorities_path), the priority of every stored slot,
    /// the largest priority seen, alpha and epsilon: a loaded buffer samples exactly as this one.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        self.buffer.save(path)?;
        let len = self.buffer.len();
        let mut bytes = Vec::with_capacity(16 + 32 + 8 * len);
        bytes.extend_from_slice(PRIORITIES_MAGIC);
        bytes.extend_from_slice(&(len as u64).to_le_bytes());
        for x in [self.max_priority, self.alpha, self.epsilon].into_iter().chain((0..len).map(|i| self.tree.get(i))) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let ppath = Self::priorities_path(path);
        write_atomic(&ppath, &bytes).map_err(|source| CheckpointError::Io { path: ppath, source })
    }

    /// Loads what [`save`](PrioritizedReplay::save) wrote: transitions and priorities.
    pub fn load(&mut self, path: &Path) -> Result<(), CheckpointError> {
        self.buffer.load(path)?;
        let ppath = Self::priorities_path(path);
        let bytes = std::fs::read(&ppath).map_err(|source| CheckpointError::Io { path: ppath.clone(), source })?;
        let corrupt = |message: String| CheckpointError::Corrupt { path: ppath.clone(), message };
        let len = self.buffer.len();
        if bytes.len() < 48 || &bytes[..16] != PRIORITIES_MAGIC {
            return Err(corrupt("not a priorities file (bad header)".into()));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes"));
        if word(0) as usize != len || bytes.len() != 48 + 8 * len {
            return Err(corrupt(format!(
                "{} bytes for {} priorities; the replay buffer holds {len} transitions (truncated?)",
                bytes.len(),
                word(0)
            )));
        }
        let (max_priority, alpha, epsilon) =
            (f64::from_bits(word(1)), f64::from_bits(word(2)), f64::from_bits(word(3)));
        if alpha != self.alpha || epsilon != self.epsilon {
            return Err(corrupt(format!(
                "saved with alpha {alpha}, epsilon {epsilon}; this buffer has {}, {}",
                self.alpha, self.epsilon
            )));
        }
        let priorities: Vec<f64> = (0..len).map(|i| f64::from_bits(word(4 + i))).collect();
        if !max_priority.is_finite() || priorities.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(corrupt("priorities must be finite and non-negative".into()));
        }
        // Rebuilding from the leaves gives the very same sums: every inner node is the sum of its
        // two children, whatever order the leaves were set in.
        self.tree = SumTree::new(self.buffer.capacity());
        for (i, &p) in priorities.iter().enumerate() {
            self.tree.set(i, p);
        }
        self.max_priority = max_priority;
        Ok(())
    }

    /// Sets the priorities of sampled slots from their TD errors: `p = |td| + epsilon`.
    pub fn update_priorities(&mut self, indices: &[usize], td_errors: &[f32]) {
        for (&i, &td) in indices.iter().zip(td_errors) {
            let p = (td.abs() as f64).max(0.0) + self.epsilon;
            let p = if p.is_finite() { p } else { self.max_priority };
            self.max_priority = self.max_priority.max(p);
            self.tree.set(i, p.powf(self.alpha));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn ring_buffer_overwrites_the_oldest_and_batches_are_contiguous() {
        let mut b = ReplayBuffer::new(3, 2, 1);
        for t in 0..5 {
            let x = t as f32;
            b.push(&[x, -x], &[t as f32 % 2.0], x * 10.0, &[x + 1.0, -x - 1.0], t == 4, 0.99);
        }
        assert_eq!(b.len(), 3);
        // Slots hold t = 3, 4, 2.
        let mut batch = Batch::default();
        let mut rng = StdRng::seed_from_u64(0);
        b.sample(64, &mut rng, &mut batch);
        for k in 0..64 {
            let x = batch.obs[2 * k];
            assert!([2.0, 3.0, 4.0].contains(&x));
            assert_eq!(&batch.obs[2 * k..2 * k + 2], &[x, -x]);
            assert_eq!(&batch.next_obs[2 * k..2 * k + 2], &[x + 1.0, -x - 1.0]);
            assert_eq!(batch.rewards[k], x * 10.0);
            assert_eq!(batch.actions[k], x % 2.0);
            assert_eq!(batch.terminated[k], if x == 4.0 { 1.0 } else { 0.0 });
            assert_eq!(batch.discounts[k], 0.99);
        }
        assert_eq!(b.memory_bytes(), 4 * (3 * 2 * 2 + 3 + 3 * 3));
    }

    #[test]
    fn saved_buffers_load_identically_and_bad_files_are_errors() {
        let mut b = ReplayBuffer::new(5, 2, 1);
        for t in 0..7 {
            b.push(&[t as f32, 1.0], &[1.0], t as f32, &[0.5, t as f32], t % 3 == 0, 0.9);
        }
        let dir = std::env::temp_dir().join(format!("glimpse-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replay.bin");
        b.save(&path).unwrap();
        let mut c = ReplayBuffer::new(5, 2, 1);
        c.load(&path).unwrap();
        assert_eq!((c.len(), c.next), (b.len(), b.next));
        assert_eq!(c.fields(), b.fields());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(matches!(c.load(&path), Err(CheckpointError::Corrupt { .. })));
        b.save(&path).unwrap();
        let err = ReplayBuffer::new(6, 2, 1).load(&path).unwrap_err().to_string();
        assert!(err.contains("capacity 5") && err.contains("replay.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uniform_sampling_passes_a_chi_square_test() {
        let n = 50;
        let mut b = ReplayBuffer::new(n, 1, 1);
        for i in 0..n {
            b.push(&[i as f32], &[0.0], 0.0, &[0.0], false, 1.0);
        }
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0usize; n];
        let mut batch = Batch::default();
        for _ in 0..1000 {
            b.sample(100, &mut rng, &mut batch);
            for &x in &batch.obs {
                counts[x as usize] += 1;
            }
        }
        let expected = 100_000.0 / n as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        // 49 degrees of freedom: the 99.9% quantile is 85.4.
        assert!(chi2 < 85.4, "chi2 = {chi2}, counts {counts:?}");
    }

    /// Collects what NStep stores.
    fn run_nstep(n: usize, steps: &[(f32, bool, bool)]) -> Vec<(f32, f32, f32, bool, f32)> {
        let gamma = 0.5;
        let mut ns = NStep::new(1, n, gamma, 1, 1);
        let mut out = Vec::new();
        for (t, &(r, term, trunc)) in steps.iter().enumerate() {
            let t = t as f32;
            ns.push(0, &[t], &[0.0], r, &[t + 1.0], term, trunc, |o, _, ret, next, te, d| {
                out.push((o[0], ret, next[0], te, d))
            });
        }
        out
    }

    #[test]
    fn n_step_returns_match_hand_computed_values_across_episode_ends() {
        // Episode A: rewards 1, 2, 4, 8 then terminated. Episode B: 16, 32 then truncated.
        // Episode C: 1, 1, 1 (still running, nothing flushed beyond the window).
        let steps = [
            (1.0, false, false),
            (2.0, false, false),
            (4.0, false, false),
            (8.0, true, false),
            (16.0, false, false),
            (32.0, false, true),
            (1.0, false, false),
            (1.0, false, false),
            (1.0, false, false),
        ];
        let got = run_nstep(3, &steps);
        let expected = vec![
            // obs, return, next_obs, terminated, discount (gamma = 0.5)
            (0.0, 1.0 + 0.5 * 2.0 + 0.25 * 4.0, 3.0, false, 0.125),
            (1.0, 2.0 + 0.5 * 4.0 + 0.25 * 8.0, 4.0, true, 0.125),
            (2.0, 4.0 + 0.5 * 8.0, 4.0, true, 0.25),
            (3.0, 8.0, 4.0, true, 0.5),
            (4.0, 16.0 + 0.5 * 32.0, 6.0, false, 0.25),
            (5.0, 32.0, 6.0, false, 0.5),
            (6.0, 1.0 + 0.5 + 0.25, 9.0, false, 0.125),
        ];
        assert_eq!(got, expected);
        // n = 1 is plain one-step TD.
        let one = run_nstep(1, &steps[..4]);
        assert_eq!(one[3], (3.0, 8.0, 4.0, true, 0.5));
        assert_eq!(one.len(), 4);
    }

    #[test]
    fn n_step_keeps_parallel_envs_apart() {
        let mut ns = NStep::new(2, 2, 1.0, 1, 1);
        let mut out = Vec::new();
        for t in 0..3 {
            for env in 0..2 {
                let r = (env * 10 + t) as f32;
                ns.push(env, &[r], &[0.0], r, &[r], false, false, |o, _, ret, _, _, _| out.push((o[0], ret)));
            }
        }
        assert_eq!(out, vec![(0.0, 1.0), (10.0, 21.0), (1.0, 3.0), (11.0, 23.0)]);
    }

    #[test]
    fn sum_tree_prefix_sums_and_search_are_right() {
        let p = [3.0, 0.0, 1.0, 5.0, 2.5, 0.5];
        let mut t = SumTree::new(p.len());
        for (i, &x) in p.iter().enumerate() {
            t.set(i, x);
        }
        let mut acc = 0.0;
        for (i, &x) in p.iter().enumerate() {
            assert_eq!(t.prefix_sum(i), acc);
            assert_eq!(t.get(i), x);
            acc += x;
        }
        assert_eq!(t.total(), 12.0);
        assert_eq!(t.min(), 0.0);
        assert_eq!(t.find(0.0), 0);
        assert_eq!(t.find(2.99), 0);
        assert_eq!(t.find(3.0), 2); // slot 1 has zero priority: never found
        assert_eq!(t.find(4.0), 3);
        assert_eq!(t.find(9.0), 4);
        assert_eq!(t.find(11.99), 5);
        t.set(3, 1.0);
        assert_eq!(t.total(), 8.0);
        assert_eq!(t.prefix_sum(4), 5.0);
    }

    #[test]
    fn prioritized_sampling_follows_priorities_with_correct_weights() {
        let mut per = PrioritizedReplay::new(4, 1, 1, 1.0);
        for i in 0..4 {
            per.push(&[i as f32], &[0.0], 0.0, &[0.0], false, 1.0);
        }
        per.update_priorities(&[0, 1, 2, 3], &[1.0, 2.0, 3.0, 4.0]);
        let mut rng = StdRng::seed_from_u64(1);
        let mut batch = Batch::default();
        let mut counts = [0usize; 4];
        for _ in 0..2000 {
            per.sample(10, 0.5, &mut rng, &mut batch);
            for (k, &i) in batch.indices.iter().enumerate() {
                counts[i] += 1;
                assert_eq!(batch.obs[k], i as f32);
                // P(i) = (i+1)/10; weight = (4 P(i))^-0.5 normalized by the lowest-priority slot's.
                let p = (i as f64 + 1.0 + 1e-6) / (10.0 + 4e-6);
                let pmin = (1.0 + 1e-6) / (10.0 + 4e-6);
                let w = (p / pmin).powf(-0.5);
                assert!((batch.weights[k] as f64 - w).abs() < 1e-5, "{} vs {w}", batch.weights[k]);
            }
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = 20_000.0 * (i as f64 + 1.0) / 10.0;
            assert!((c as f64 - expected).abs() < 0.05 * expected, "slot {i}: {c} vs {expected}");
        }
        // New transitions get the largest priority seen (4 + eps).
        per.push(&[9.0], &[0.0], 0.0, &[0.0], false, 1.0);
        assert!((per.tree().get(0) - 4.0).abs() < 1e-5);
    }

    #[test]
    fn saved_priorities_sample_identically_and_a_cut_file_is_an_error() {
        let mut per = PrioritizedReplay::new(8, 1, 1, 0.6);
        for i in 0..11 {
            per.push(&[i as f32], &[0.0], 0.0, &[0.0], false, 1.0);
        }
        per.update_priorities(&[0, 3, 5], &[0.3, 7.0, 0.01]);
        let dir = std::env::temp_dir().join(format!("glimpse-per-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replay.bin");
        per.save(&path).unwrap();
        let mut loaded = PrioritizedReplay::new(8, 1, 1, 0.6);
        loaded.load(&path).unwrap();
        assert_eq!(loaded.tree().sums, per.tree().sums);
        assert_eq!(loaded.tree().mins, per.tree().mins);
        let (mut a, mut b) = (Batch::default(), Batch::default());
        per.sample(16, 0.5, &mut StdRng::seed_from_u64(3), &mut a);
        loaded.sample(16, 0.5, &mut StdRng::seed_from_u64(3), &mut b);
        assert_eq!((a.indices, a.weights), (b.indices, b.weights));
        // New pushes get the same (restored) largest priority.
        per.push(&[1.0], &[0.0], 0.0, &[0.0], false, 1.0);
        loaded.push(&[1.0], &[0.0], 0.0, &[0.0], false, 1.0);
        assert_eq!(loaded.tree().sums, per.tree().sums);
        // Truncated priorities file.
        let ppath = PrioritizedReplay::priorities_path(&path);
        let bytes = std::fs::read(&ppath).unwrap();
        std::fs::write(&ppath, &bytes[..bytes.len() - 3]).unwrap();
        let err = loaded.load(&path).unwrap_err().to_string();
        assert!(err.contains("replay.bin.priorities") && err.contains("truncated"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restored_n_step_queues_emit_the_same_transitions() {
        let mut a = NStep::new(2, 3, 0.9, 1, 1);
        let mut sink = Vec::new();
        for t in 0..5 {
            a.push(t % 2, &[t as f32 * 0.1], &[1.0], t as f32, &[0.0], false, false, |o, _, r, _, _, d| {
                sink.push((o[0], r, d))
            });
        }
        let saved = serde_json::to_string(&a.save_state()).unwrap();
        let mut b = NStep::new(2, 3, 0.9, 1, 1);
        b.restore(&serde_json::from_str(&saved).unwrap()).unwrap();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        for t in 5..9 {
            let last = t == 8;
            a.push(t % 2, &[t as f32 * 0.1], &[1.0], t as f32, &[9.0], last, false, |o, _, r, _, te, d| {
                out_a.push((o[0], r, te, d))
            });
            b.push(t % 2, &[t as f32 * 0.1], &[1.0], t as f32, &[9.0], last, false, |o, _, r, _, te, d| {
                out_b.push((o[0], r, te, d))
            });
        }
        assert!(out_a.len() >= 3, "{out_a:?}");
        assert_eq!(out_a, out_b);
        let err = NStep::new(2, 2, 0.9, 1, 1).restore(&a.save_state()).unwrap_err();
        assert!(err.contains("expected"), "{err}");
    }

    #[test]
    fn an_n_step_state_with_start_or_count_at_n_is_refused() {
        let mut a = NStep::new(2, 3, 0.9, 1, 1);
        a.push(0, &[0.5], &[1.0], 1.0, &[0.0], false, false, |_, _, _, _, _, _| {});
        let good = a.save_state();
        for (start, count) in [(3, 0), (0, 3), (7, 1), (2, 2)] {
            let mut state = good.clone();
            state.start[1] = start;
            state.count[1] = count;
            let mut b = NStep::new(2, 3, 0.9, 1, 1);
            let result = b.restore(&state);
            if start < 3 && count < 3 {
                assert!(result.is_ok(), "{result:?}");
            } else {
                let err = result.unwrap_err();
                assert!(err.contains(&format!("env 1 has start {start} and count {count}")), "{err}");
                assert_eq!(b.save_state().count, [0, 0], "nothing restored");
            }
        }
    }
}
