//! On-policy rollout storage (N envs × T steps) with discounted returns, reward-to-go, GAE(λ) and
//! seeded minibatch iteration, shared by REINFORCE, A2C and PPO.
//!
//! Layout is time-major: index `t * num_envs + i` is step `t` of env `i`.
//!
//! Termination and truncation differ only in what a step bootstraps from:
//! - `terminated`: the episode reached a terminal MDP state; the value after it is 0.
//! - `truncated` (and not terminated): the episode was cut short, so the return continues past the
//!   cut; it bootstraps from V(final observation) (stored in [`RolloutBuffer::bootstrap_values`]).
//!
//! In both cases the advantage/return recursion stops at the episode boundary.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::env::{Env, EnvError, EpisodeStats};
use crate::finite::{check_finite, NonFinite};
use crate::vec_env::VecEnv;

/// Why [`RolloutBuffer::collect`] stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RolloutError {
    /// An environment failed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// An observation or a reward is NaN or infinite (the policy never saw it).
    #[error(transparent)]
    NonFinite(#[from] NonFinite),
}

/// [`check_finite`] on rows of `width` values (one per env), naming the env in the error.
fn check_rows(what: &str, values: &[f32], width: usize, step: u64) -> Result<(), NonFinite> {
    check_finite(what, values, step).map_err(|e| NonFinite {
        what: format!("{what} of env {}", e.index / width.max(1)),
        index: e.index % width.max(1),
        len: width,
        ..e
    })
}

/// An action that can be stored as a flat row of `f32` (discrete index or continuous vector).
pub trait FlatAction: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Number of `f32` values in one stored action.
    const DIM: usize;
    /// Writes the action into `out` (length `DIM`).
    fn write_to(&self, out: &mut [f32]);
}

impl FlatAction for usize {
    const DIM: usize = 1;
    fn write_to(&self, out: &mut [f32]) {
        out[0] = *self as f32;
    }
}

impl<const N: usize> FlatAction for [f32; N] {
    const DIM: usize = N;
    fn write_to(&self, out: &mut [f32]) {
        out.copy_from_slice(self);
    }
}

/// Discounted returns of one trajectory: `G_t = r_t + γ·(ends_t ? next_values_t : G_{t+1})`.
///
/// `next_values[t]` is what step `t` bootstraps from when the recursion cannot continue: 0 after a
/// termination, V(final obs) after a truncation, V(s_{t+1}) at the end of the buffer. With all
/// `next_values` zero this is the (discounted) reward-to-go.
pub fn discounted_returns(rewards: &[f32], ends: &[bool], next_values: &[f32], gamma: f32) -> Vec<f32> {
    let n = rewards.len();
    assert!(ends.len() == n && next_values.len() == n, "discounted_returns: slices differ in length");
    let mut out = vec![0.0; n];
    for t in (0..n).rev() {
        let future = if ends[t] || t + 1 == n { next_values[t] } else { out[t + 1] };
        out[t] = rewards[t] + gamma * future;
    }
    out
}

/// Reward-to-go `sum_{k>=t} γ^(k-t) r_k` within each episode (no bootstrap).
pub fn reward_to_go(rewards: &[f32], ends: &[bool], gamma: f32) -> Vec<f32> {
    discounted_returns(rewards, ends, &vec![0.0; rewards.len()], gamma)
}

/// Generalised advantage estimation of one trajectory.
///
/// `δ_t = r_t + γ·next_values_t − values_t`, `A_t = δ_t + γλ·(1 − ends_t)·A_{t+1}`, where
/// `next_values` follows the convention of [`discounted_returns`] but holds V(s_{t+1}) on every
/// step (it is only a bootstrap source, the recursion is cut by `ends`).
pub fn gae(rewards: &[f32], values: &[f32], next_values: &[f32], ends: &[bool], gamma: f32, lambda: f32) -> Vec<f32> {
    let n = rewards.len();
    assert!(values.len() == n && next_values.len() == n && ends.len() == n, "gae: slices differ in length");
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for t in (0..n).rev() {
        let delta = rewards[t] + gamma * next_values[t] - values[t];
        let carry = if ends[t] || t + 1 == n { 0.0 } else { next_adv };
        adv[t] = delta + gamma * lambda * carry;
        next_adv = adv[t];
    }
    adv
}

/// Shifts and scales `x` to mean 0 and (population) standard deviation 1; leaves it centred only
/// when the spread is ~0.
pub fn normalize(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    for v in x.iter_mut() {
        *v = ((*v as f64 - mean) / (std + 1e-8)) as f32;
    }
}

/// What a policy returns for one step of N environments (see [`RolloutBuffer::collect`]).
#[derive(Debug, Clone)]
pub struct PolicyStep<A> {
    /// Actions to send to the envs (continuous ones possibly clipped to the action bounds).
    pub env_actions: Vec<A>,
    /// Actions as sampled, flat `[N * act_dim]` (what the buffer stores and log-probs refer to).
    pub actions: Vec<f32>,
    /// Log-probabilities of `actions`, `[N]`.
    pub log_probs: Vec<f32>,
    /// Critic values V(obs), `[N]` (zeros without a critic).
    pub values: Vec<f32>,
}

/// One step of N environments to append to a [`RolloutBuffer`].
#[derive(Debug, Clone, Copy)]
pub struct StepRecord<'a> {
    /// Observations the actions were taken in, `[N * obs_dim]`.
    pub obs: &'a [f32],
    /// Stored actions (as sampled, before any clipping), `[N * act_dim]`.
    pub actions: &'a [f32],
    /// Log-probabilities of the actions under the behaviour policy, `[N]`.
    pub log_probs: &'a [f32],
    /// V(obs), `[N]` (zeros when there is no critic).
    pub values: &'a [f32],
    /// Rewards, `[N]`.
    pub rewards: &'a [f32],
    /// Terminated flags, `[N]`.
    pub terminated: &'a [bool],
    /// Truncated flags, `[N]`.
    pub truncated: &'a [bool],
    /// V(final obs) for envs that were truncated (and not terminated), else ignored; `[N]`.
    pub bootstrap_values: &'a [f32],
}

/// Storage for `num_steps` steps of `num_envs` environments (time-major).
#[derive(Debug, Clone)]
pub struct RolloutBuffer {
    /// Number of environments N.
    pub num_envs: usize,
    /// Steps per env T.
    pub num_steps: usize,
    /// Values per observation.
    pub obs_dim: usize,
    /// Values per stored action.
    pub act_dim: usize,
    /// `[T * N * obs_dim]`.
    pub obs: Vec<f32>,
    /// `[T * N * act_dim]`.
    pub actions: Vec<f32>,
    /// `[T * N]` behaviour log-probabilities.
    pub log_probs: Vec<f32>,
    /// `[T * N]` critic values V(s_t).
    pub values: Vec<f32>,
    /// `[T * N]` rewards.
    pub rewards: Vec<f32>,
    /// `[T * N]` terminated flags.
    pub terminated: Vec<bool>,
    /// `[T * N]` truncated flags.
    pub truncated: Vec<bool>,
    /// `[T * N]` V(final obs) where truncated, else 0.
    pub bootstrap_values: Vec<f32>,
    /// `[N]` V of the observation after the last stored step (set with [`finish`](Self::finish)).
    pub last_values: Vec<f32>,
    /// `[T * N]` advantages (after [`compute_gae`](Self::compute_gae)).
    pub advantages: Vec<f32>,
    /// `[T * N]` return targets (after `compute_gae` or [`compute_returns`](Self::compute_returns)).
    pub returns: Vec<f32>,
    len: usize,
}

impl RolloutBuffer {
    /// An empty buffer for `num_envs` envs × `num_steps` steps.
    pub fn new(num_envs: usize, num_steps: usize, obs_dim: usize, act_dim: usize) -> Self {
        let n = num_envs * num_steps;
        Self {
            num_envs,
            num_steps,
            obs_dim,
            act_dim,
            obs: vec![0.0; n * obs_dim],
            actions: vec![0.0; n * act_dim],
            log_probs: vec![0.0; n],
            values: vec![0.0; n],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            bootstrap_values: vec![0.0; n],
            last_values: vec![0.0; num_envs],
            advantages: vec![0.0; n],
            returns: vec![0.0; n],
            len: 0,
        }
    }

    /// Steps stored so far (per env).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no step is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `num_steps` steps are stored.
    pub fn is_full(&self) -> bool {
        self.len == self.num_steps
    }

    /// Total number of transitions `T * N`.
    pub fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }

    /// Forgets the stored steps (storage is reused).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends one step of all envs.
    ///
    /// # Panics
    /// When the buffer is full or a slice has the wrong length (programming errors).
    pub fn push(&mut self, s: StepRecord<'_>) {
        assert!(!self.is_full(), "RolloutBuffer::push on a full buffer");
        let (n, t) = (self.num_envs, self.len);
        assert_eq!(s.obs.len(), n * self.obs_dim, "obs length");
        assert_eq!(s.actions.len(), n * self.act_dim, "actions length");
        for len in [s.log_probs.len(), s.values.len(), s.rewards.len(), s.bootstrap_values.len()] {
            assert_eq!(len, n, "per-env slice length");
        }
        assert!(s.terminated.len() == n && s.truncated.len() == n, "flag length");
        self.obs[t * n * self.obs_dim..(t + 1) * n * self.obs_dim].copy_from_slice(s.obs);
        self.actions[t * n * self.act_dim..(t + 1) * n * self.act_dim].copy_from_slice(s.actions);
        let row = t * n..(t + 1) * n;
        self.log_probs[row.clone()].copy_from_slice(s.log_probs);
        self.values[row.clone()].copy_from_slice(s.values);
        self.rewards[row.clone()].copy_from_slice(s.rewards);
        self.terminated[row.clone()].copy_from_slice(s.terminated);
        self.truncated[row.clone()].copy_from_slice(s.truncated);
        for i in 0..n {
            let bootstrap = s.truncated[i] && !s.terminated[i];
            self.bootstrap_values[t * n + i] = if bootstrap { s.bootstrap_values[i] } else { 0.0 };
        }
        self.len += 1;
    }

    /// Clears the buffer and fills it with `num_steps` steps of `venv`, starting from the current
    /// observations `obs` (`[N * obs_dim]`, updated in place). `act` picks the actions;
    /// `value_of` gives V for a batch of observation rows: it is asked for the final observations
    /// of truncated (not terminated) episodes, and for the observations after the last step
    /// ([`finish`](Self::finish)). Returns the episodes that ended.
    ///
    /// Every observation (the current ones, each step's next and final ones) and every reward is
    /// checked before the policy or the buffer sees it: a NaN or an infinity stops the rollout with
    /// [`RolloutError::NonFinite`], naming the env and the env step (`env_steps`, the steps of all
    /// envs done before this rollout, plus the steps taken in it).
    pub fn collect<E: Env + 'static>(
        &mut self,
        venv: &mut VecEnv<E>,
        obs: &mut [f32],
        env_steps: u64,
        mut act: impl FnMut(&[f32]) -> PolicyStep<E::Act>,
        mut value_of: impl FnMut(&[f32]) -> Vec<f32>,
    ) -> Result<Vec<EpisodeStats>, RolloutError> {
        let (n, d) = (self.num_envs, self.obs_dim);
        if venv.num_envs() != n || venv.obs_dim() != d || obs.len() != n * d {
            return Err(EnvError::Other(format!(
                "rollout buffer is for {n} envs × {d} values, got a VecEnv of {} × {} and {} observation values",
                venv.num_envs(),
                venv.obs_dim(),
                obs.len()
            ))
            .into());
        }
        check_rows("observation", obs, d, env_steps)?;
        self.clear();
        let mut episodes = Vec::new();
        let mut bootstrap = vec![0.0; n];
        for t in 0..self.num_steps {
            let p = act(obs);
            let step = venv.step(&p.env_actions)?;
            let at = env_steps + ((t + 1) * n) as u64;
            check_rows("reward", step.rewards, 1, at)?;
            check_rows("observation", step.final_obs, d, at)?;
            check_rows("observation after a reset", step.obs, d, at)?;
            let cut: Vec<usize> = (0..n).filter(|&i| step.truncated[i] && !step.terminated[i]).collect();
            bootstrap.iter_mut().for_each(|b| *b = 0.0);
            if !cut.is_empty() {
                let rows: Vec<f32> =
                    cut.iter().flat_map(|&i| step.final_obs[i * d..(i + 1) * d].iter().copied()).collect();
                for (&i, v) in cut.iter().zip(value_of(&rows)) {
                    bootstrap[i] = v;
                }
            }
            self.push(StepRecord {
                obs,
                actions: &p.actions,
                log_probs: &p.log_probs,
                values: &p.values,
                rewards: step.rewards,
                terminated: step.terminated,
                truncated: step.truncated,
                bootstrap_values: &bootstrap,
            });
            episodes.extend(step.episodes.iter().map(|&(_, s)| s));
            obs.copy_from_slice(step.obs);
        }
        self.finish(&value_of(obs));
        Ok(episodes)
    }

    /// Records V of the observations that follow the last stored step, `[N]`.
    pub fn finish(&mut self, last_values: &[f32]) {
        assert_eq!(last_values.len(), self.num_envs, "last_values length");
        self.last_values.copy_from_slice(last_values);
    }

    /// Whether step `k = t * N + i` ends an episode (terminated or truncated).
    pub fn ends(&self, k: usize) -> bool {
        self.terminated[k] || self.truncated[k]
    }

    /// Env `i`'s column of (rewards, values, next_values, ends) over the stored steps.
    fn column(&self, i: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<bool>) {
        let (n, len) = (self.num_envs, self.len);
        let mut cols = (Vec::with_capacity(len), Vec::with_capacity(len), Vec::with_capacity(len), Vec::new());
        for t in 0..len {
            let k = t * n + i;
            let next = if self.terminated[k] {
                0.0
            } else if self.truncated[k] {
                self.bootstrap_values[k]
            } else if t + 1 < len {
                self.values[k + n]
            } else {
                self.last_values[i]
            };
            cols.0.push(self.rewards[k]);
            cols.1.push(self.values[k]);
            cols.2.push(next);
            cols.3.push(self.ends(k));
        }
        cols
    }

    /// Fills `advantages` with GAE(λ) and `returns` with `advantages + values` (the critic's target).
    pub fn compute_gae(&mut self, gamma: f32, lambda: f32) {
        let n = self.num_envs;
        for i in 0..n {
            let (r, v, next, ends) = self.column(i);
            let adv = gae(&r, &v, &next, &ends, gamma, lambda);
            for (t, a) in adv.into_iter().enumerate() {
                self.advantages[t * n + i] = a;
                self.returns[t * n + i] = a + self.values[t * n + i];
            }
        }
    }

    /// Fills `returns` with bootstrapped discounted returns (truncation bootstraps from
    /// `bootstrap_values`, the buffer's end from `last_values`) and `advantages` with
    /// `returns − values`.
    pub fn compute_returns(&mut self, gamma: f32) {
        let n = self.num_envs;
        for i in 0..n {
            let (r, _, next, ends) = self.column(i);
            let ret = discounted_returns(&r, &ends, &next, gamma);
            for (t, g) in ret.into_iter().enumerate() {
                self.returns[t * n + i] = g;
                self.advantages[t * n + i] = g - self.values[t * n + i];
            }
        }
    }

    /// `[T * N]` mask: true for steps whose episode ends inside the buffer, i.e. whose Monte-Carlo
    /// return is complete without any bootstrap from the buffer's end.
    pub fn complete_episode_mask(&self) -> Vec<bool> {
        let n = self.num_envs;
        let mut mask = vec![false; self.len * n];
        for i in 0..n {
            let mut complete = false;
            for t in (0..self.len).rev() {
                let k = t * n + i;
                complete |= self.ends(k);
                mask[k] = complete;
            }
        }
        mask
    }

    /// Normalises the stored advantages to mean 0, std 1.
    pub fn normalize_advantages(&mut self) {
        let len = self.len * self.num_envs;
        normalize(&mut self.advantages[..len]);
    }

    /// Indices `0..len*N` shuffled with `rng` and cut into minibatches of `minibatch_size` (the
    /// last one may be smaller). The same rng state gives the same batches.
    pub fn minibatch_indices<R: Rng + ?Sized>(&self, minibatch_size: usize, rng: &mut R) -> Vec<Vec<usize>> {
        assert!(minibatch_size > 0, "minibatch_size must be positive");
        let mut idx: Vec<usize> = (0..self.len * self.num_envs).collect();
        idx.shuffle(rng);
        idx.chunks(minibatch_size).map(|c| c.to_vec()).collect()
    }

    /// Gathers the given transitions into a [`Minibatch`].
    pub fn minibatch(&self, indices: &[usize]) -> Minibatch {
        let mut mb = Minibatch {
            obs: Vec::with_capacity(indices.len() * self.obs_dim),
            actions: Vec::with_capacity(indices.len() * self.act_dim),
            log_probs: Vec::with_capacity(indices.len()),
            values: Vec::with_capacity(indices.len()),
            advantages: Vec::with_capacity(indices.len()),
            returns: Vec::with_capacity(indices.len()),
        };
        for &k in indices {
            mb.obs.extend_from_slice(&self.obs[k * self.obs_dim..(k + 1) * self.obs_dim]);
            mb.actions.extend_from_slice(&self.actions[k * self.act_dim..(k + 1) * self.act_dim]);
            mb.log_probs.push(self.log_probs[k]);
            mb.values.push(self.values[k]);
            mb.advantages.push(self.advantages[k]);
            mb.returns.push(self.returns[k]);
        }
        mb
    }
}

/// A set of transitions gathered from a [`RolloutBuffer`], as flat rows.
#[derive(Debug, Clone, Default)]
pub struct Minibatch {
    /// `[B * obs_dim]`.
    pub obs: Vec<f32>,
    /// `[B * act_dim]`.
    pub actions: Vec<f32>,
    /// `[B]` behaviour log-probabilities.
    pub log_probs: Vec<f32>,
    /// `[B]` values at collection time.
    pub values: Vec<f32>,
    /// `[B]` advantages.
    pub advantages: Vec<f32>,
    /// `[B]` return targets.
    pub returns: Vec<f32>,
}

impl Minibatch {
    /// Number of transitions.
    pub fn len(&self) -> usize {
        self.log_probs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.log_probs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn returns_cut_at_terminations_and_bootstrap_elsewhere() {
        // steps: r=1,2,3 | terminated after step 1 ; truncated after step 2 (bootstrap 10); end (bootstrap 5)
        let r = [1.0, 2.0, 3.0, 4.0];
        let ends = [false, true, true, false];
        let next = [0.0, 0.0, 10.0, 5.0];
        let g = discounted_returns(&r, &ends, &next, 0.5);
        assert!(close(&g, &[1.0 + 0.5 * 2.0, 2.0, 3.0 + 5.0, 4.0 + 2.5]), "{g:?}");
        assert!(close(&reward_to_go(&r, &ends, 1.0), &[3.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn normalize_gives_zero_mean_unit_std() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        normalize(&mut x);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        let var: f32 = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-4);
    }

    #[test]
    fn minibatches_cover_everything_once_and_are_seeded() {
        let mut buf = RolloutBuffer::new(2, 3, 1, 1);
        for t in 0..3 {
            let v = [t as f32, 10.0 + t as f32];
            buf.push(StepRecord {
                obs: &v,
                actions: &v,
                log_probs: &v,
                values: &v,
                rewards: &v,
                terminated: &[false; 2],
                truncated: &[false; 2],
                bootstrap_values: &[0.0; 2],
            });
        }
        let a = buf.minibatch_indices(4, &mut rand::rngs::StdRng::seed_from_u64(3));
        let b = buf.minibatch_indices(4, &mut rand::rngs::StdRng::seed_from_u64(3));
        assert_eq!(a, b);
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 2]);
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        let mb = buf.minibatch(&[5, 0]);
        assert_eq!(mb.obs, vec![12.0, 0.0]);
    }

    /// Three envs over three steps, γ = 0.9, λ = 0.8 (values worked out by hand):
    /// env 0 terminates after step 0; env 1 is truncated after step 1 (V(final) = 3);
    /// env 2 both terminates and is truncated after step 1 (termination wins, the 100 is ignored).
    fn hand_buffer() -> RolloutBuffer {
        let mut buf = RolloutBuffer::new(3, 3, 1, 1);
        let rewards = [[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [3.0, 1.0, 1.0]];
        let values = [[0.5, 0.2, 0.0], [1.0, 0.4, 0.0], [1.5, 0.6, 0.0]];
        let term = [[true, false, false], [false, false, true], [false, false, false]];
        let trunc = [[false, false, false], [false, true, true], [false, false, false]];
        let boot = [[0.0, 0.0, 0.0], [0.0, 3.0, 100.0], [0.0, 0.0, 0.0]];
        for t in 0..3 {
            buf.push(StepRecord {
                obs: &[0.0; 3],
                actions: &[0.0; 3],
                log_probs: &[0.0; 3],
                values: &values[t],
                rewards: &rewards[t],
                terminated: &term[t],
                truncated: &trunc[t],
                bootstrap_values: &boot[t],
            });
        }
        buf.finish(&[2.0, 1.0, 0.0]);
        buf
    }

    fn env_column(buf: &RolloutBuffer, v: &[f32], i: usize) -> Vec<f32> {
        (0..buf.len()).map(|t| v[t * buf.num_envs + i]).collect()
    }

    #[test]
    fn gae_matches_hand_computation_across_terminations_and_truncations() {
        let mut buf = hand_buffer();
        buf.compute_gae(0.9, 0.8);
        // env 0: δ2 = 3 + .9·2 − 1.5 = 3.3; δ1 = 2 + .9·1.5 − 1 = 2.35, A1 = 2.35 + .72·3.3; A0 = 1 − .5 (cut).
        assert!(close(&env_column(&buf, &buf.advantages, 0), &[0.5, 4.726, 3.3]));
        // env 1: δ2 = 1 + .9·1 − .6 = 1.3; A1 = 1 + .9·3 − .4 = 3.3 (cut); A0 = 1 + .9·.4 − .2 + .72·3.3.
        assert!(close(&env_column(&buf, &buf.advantages, 1), &[3.536, 3.3, 1.3]));
        // env 2: A2 = 1; A1 = 1 (terminal, bootstrap ignored); A0 = 1 + .72·1.
        assert!(close(&env_column(&buf, &buf.advantages, 2), &[1.72, 1.0, 1.0]));
        assert!(close(&env_column(&buf, &buf.returns, 0), &[1.0, 5.726, 4.8]));
        assert!(close(&env_column(&buf, &buf.returns, 1), &[3.736, 3.7, 1.9]));
    }

    #[test]
    fn returns_match_hand_computation_across_terminations_and_truncations() {
        let mut buf = hand_buffer();
        buf.compute_returns(0.9);
        assert!(close(&env_column(&buf, &buf.returns, 0), &[1.0, 6.32, 4.8]));
        assert!(close(&env_column(&buf, &buf.returns, 1), &[4.33, 3.7, 1.9]));
        assert!(close(&env_column(&buf, &buf.returns, 2), &[1.9, 1.0, 1.0]));
        assert!(close(&env_column(&buf, &buf.advantages, 1), &[4.13, 3.3, 1.3]));
        let mask = buf.complete_episode_mask();
        assert_eq!(mask, vec![true, true, true, false, true, true, false, false, false]);
        // GAE with λ = 1 gives the same return targets.
        let mut gae1 = hand_buffer();
        gae1.compute_gae(0.9, 1.0);
        assert!(close(&gae1.returns, &buf.returns));
    }

    /// Counts its steps (obs = [count]), reward 1 per step, terminates at `term_at` if set.
    struct Counter {
        count: usize,
        term_at: Option<usize>,
    }
    impl Env for Counter {
        type Obs = [f32; 1];
        type Act = usize;
        fn observation_space(&self) -> crate::Space {
            crate::BoxSpace::new(vec![0.0], vec![10.0]).into()
        }
        fn action_space(&self) -> crate::Space {
            crate::Discrete::new(1).into()
        }
        fn reset(&mut self, _: Option<u64>) -> Result<([f32; 1], crate::Info), EnvError> {
            self.count = 0;
            Ok(([0.0], crate::Info::default()))
        }
        fn step(&mut self, _: &usize) -> Result<crate::Step<[f32; 1]>, EnvError> {
            self.count += 1;
            Ok(crate::Step {
                obs: [self.count as f32],
                reward: 1.0,
                terminated: self.term_at == Some(self.count),
                truncated: false,
                info: crate::Info::default(),
            })
        }
    }

    #[test]
    fn collect_from_a_vec_env_bootstraps_truncations_from_the_final_observation() {
        use crate::wrappers::TimeLimit;
        // Env 0 terminates every 2 steps; env 1 is truncated by its time limit after 3 steps.
        let envs = vec![
            TimeLimit::new(Counter { count: 0, term_at: Some(2) }, 3),
            TimeLimit::new(Counter { count: 0, term_at: None }, 3),
        ];
        let mut venv = VecEnv::new(envs, 1).unwrap();
        let mut obs = venv.reset(Some(0)).unwrap().to_vec();
        let mut buf = RolloutBuffer::new(2, 4, 1, 1);
        let mut asked = Vec::new();
        let episodes = buf
            .collect(
                &mut venv,
                &mut obs,
                0,
                |_| PolicyStep {
                    env_actions: vec![0, 0],
                    actions: vec![0.0; 2],
                    log_probs: vec![0.0; 2],
                    values: vec![0.0; 2],
                },
                |rows| {
                    asked.push(rows.to_vec());
                    rows.iter().map(|r| 100.0 + r).collect()
                },
            )
            .unwrap();
        assert_eq!(buf.obs, vec![0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 0.0]);
        assert_eq!(asked, vec![vec![3.0], vec![0.0, 1.0]]);
        assert_eq!(buf.last_values, vec![100.0, 101.0]);
        let mut rets: Vec<f64> = episodes.iter().map(|e| e.ret).collect();
        rets.sort_by(f64::total_cmp);
        assert_eq!(rets, vec![2.0, 2.0, 3.0]);
        buf.compute_returns(0.5);
        assert!(close(&env_column(&buf, &buf.returns, 0), &[1.5, 1.0, 1.5, 1.0]));
        assert!(close(&env_column(&buf, &buf.returns, 1), &[14.625, 27.25, 52.5, 51.5]));
        // A buffer of the wrong shape is an error, not a panic.
        let mut wrong = RolloutBuffer::new(3, 4, 1, 1);
        assert!(wrong.collect(&mut venv, &mut obs, 0, |_| unreachable!(), |_| unreachable!()).is_err());
    }

    #[test]
    fn collect_stops_at_a_non_finite_reward_or_observation_naming_env_and_step() {
        /// Env 1 of 2 reaches NaN in its observation (`nan_obs`) or reward at its third step.
        struct Bad(u32, bool);
        impl Env for Bad {
            type Obs = [f32; 2];
            type Act = usize;
            fn observation_space(&self) -> crate::Space {
                crate::BoxSpace::new(vec![0.0; 2], vec![10.0; 2]).into()
            }
            fn action_space(&self) -> crate::Space {
                crate::Discrete::new(1).into()
            }
            fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 2], crate::Info), EnvError> {
                // Seeds are `seed + i`: env 1 is the faulty one.
                if let Some(s) = seed {
                    self.0 = if s == 1 { 0 } else { 1000 };
                }
                Ok(([0.0; 2], crate::Info::default()))
            }
            fn step(&mut self, _: &usize) -> Result<crate::Step<[f32; 2]>, EnvError> {
                self.0 += 1;
                let bad = self.0 == 3;
                let (obs, reward) = match (bad, self.1) {
                    (true, true) => ([1.0, f32::NAN], 1.0),
                    (true, false) => ([1.0, 1.0], f64::INFINITY),
                    _ => ([1.0, 1.0], 1.0),
                };
                Ok(crate::Step { obs, reward, terminated: false, truncated: false, info: crate::Info::default() })
            }
        }
        for nan_obs in [true, false] {
            let mut venv = VecEnv::new(vec![Bad(0, nan_obs), Bad(0, nan_obs)], 1).unwrap();
            let mut obs = venv.reset(Some(0)).unwrap().to_vec();
            let mut buf = RolloutBuffer::new(2, 8, 2, 1);
            let policy = |_: &[f32]| PolicyStep {
                env_actions: vec![0, 0],
                actions: vec![0.0; 2],
                log_probs: vec![0.0; 2],
                values: vec![0.0; 2],
            };
            let err = buf.collect(&mut venv, &mut obs, 100, policy, |r| vec![0.0; r.len() / 2]).unwrap_err();
            let RolloutError::NonFinite(e) = err else { panic!("{err}") };
            let what = if nan_obs { "observation of env 1" } else { "reward of env 1" };
            assert_eq!((e.what.as_str(), e.step, e.index), (what, 106, if nan_obs { 1 } else { 0 }), "{e}");
            assert!(obs.iter().all(|v| v.is_finite()), "the NaN never reached the policy's observations");
        }
    }
}
