//! The training loop, in one function ([`train()`]): act, step the envs, record episodes, store,
//! learn on schedule, update the target network, log, evaluate, checkpoint. What it trains is a
//! [`Training`]: the agent, its environments and the loop's bookkeeping, saved and restored
//! whole by the run layer, so that `--stop-after N` then `--resume DIR` ends exactly where the
//! uninterrupted run ends.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use glimpse::checkpoint::{self, CheckpointError};
use glimpse::evaluate::{evaluate_greedy, EvalResult};
use glimpse::finite::check_finite;
use glimpse::run::{eval_seed, Checkpoint, Control, EvalStats, Outcome, RlMetrics, Run, RunError, SavedEnvs};
use glimpse::vec_env::{VecEnv, VecStep};
use glimpse::{Env, EnvError, EpisodeStats};
use serde::{Deserialize, Serialize};

use crate::{Config, Dqn, Error, QFunction, Summary, TrainStats};

/// The state [`train()`] trains: the agent, its environments and the loop's bookkeeping.
pub struct Training<Q, E: Env, const O: usize, const A: usize> {
    /// The agent.
    pub agent: Dqn<Q, O, A>,
    /// The `num_envs` environments collecting experience.
    pub envs: VecEnv<E>,
    /// What the loop keeps between steps besides the agent and envs.
    pub stats: LoopStats,
    /// The run's seed (it decides the evaluation seeds).
    seed: u64,
    /// The current observations, `[num_envs * O]`.
    obs: Vec<f32>,
    /// Why a loaded checkpoint cannot continue exactly (its envs could not save their state).
    unresumable: Option<String>,
}

/// What the loop keeps between steps besides the agent and the envs: with it a resumed run logs
/// and evaluates exactly as the uninterrupted one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopStats {
    /// Greedy evaluations done (their seeds follow this count).
    pub evals: u64,
    /// Sums of loss, mean Q and gradient norm since the last logged average.
    pub sums: [f64; 3],
    /// Gradient steps in `sums`.
    pub count: u64,
    /// The last (up to 20) episode returns, for the progress bar.
    pub recent_returns: VecDeque<f64>,
}

/// `loop.json` in a snapshot.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoopFile {
    /// The envs' state, or why they could not save it (e.g. a Python env).
    envs: SavedEnvs,
    stats: LoopStats,
}

/// Gradient steps per logged average of loss, Q and gradient norm.
const LOG_EVERY: u64 = 100;

impl<Q: QFunction<O, A>, E: Env<Act = usize> + 'static, const O: usize, const A: usize> Training<Q, E, O, A> {
    /// `cfg.num_envs` envs from `make_env` (checked against the network's `O` inputs and `A`
    /// actions) reset from `seed`, and a fresh agent seeded with `seed`.
    pub fn new(cfg: &Config, make_env: &dyn Fn() -> E, seed: u64) -> Result<Self, Error> {
        cfg.validate().map_err(Error::Config)?;
        let mut envs = VecEnv::new((0..cfg.num_envs).map(|_| make_env()).collect(), 1)?;
        glimpse::validate::discrete_spaces::<O, A>(envs.observation_space(), envs.action_space())?;
        let agent = Dqn::new(cfg.clone(), seed)?;
        let obs = envs.reset(Some(seed.wrapping_mul(1_000_003)))?.to_vec();
        Ok(Self { agent, envs, stats: LoopStats::default(), seed, obs, unresumable: None })
    }
}

impl<Q: QFunction<O, A>, E: Env<Act = usize> + 'static, const O: usize, const A: usize> Checkpoint
    for Training<Q, E, O, A>
{
    fn save(&self, snap: &Path) -> Result<(), CheckpointError> {
        self.agent.save(snap)?;
        let file = LoopFile { envs: SavedEnvs::of(&self.envs), stats: self.stats.clone() };
        checkpoint::save_json(&file, &snap.join("loop.json"))
    }

    fn load(&mut self, snap: &Path) -> Result<(), CheckpointError> {
        let path = snap.join("loop.json");
        let saved: LoopFile = checkpoint::load_json(&path)?;
        self.agent.load(snap)?;
        self.unresumable = saved.envs.restore(&mut self.envs, &path)?;
        self.obs = self.envs.observations().to_vec();
        self.stats = saved.stats;
        Ok(())
    }
}

/// Trains `s` in `run` until a greedy evaluation on envs from `make_env` reaches
/// `solve_threshold` or the budget is spent, logging to TensorBoard and checkpointing through the
/// run layer. `s` must be built from the run's config and seed ([`Training::new`]); a
/// `--resume`d run's checkpoint is loaded into it here.
pub fn train<Q, E, const O: usize, const A: usize>(
    mut run: Run<Config>,
    s: &mut Training<Q, E, O, A>,
    make_env: &dyn Fn() -> E,
) -> Result<Outcome<Summary>, Error>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize> + 'static,
{
    let cfg = run.config.clone();
    if s.agent.cfg != cfg || s.seed != run.seed {
        return Err(Error::Config("the training state was built with another config or seed than the run".into()));
    }
    run.restore(s)?;
    if let Some(why) = &s.unresumable {
        return Err(Error::Resume(why.clone()));
    }
    let clock = (Instant::now(), s.agent.state.global_step);
    let mut actions = Vec::with_capacity(cfg.num_envs);
    let mut solved = None;
    while s.agent.state.global_step < cfg.total_timesteps {
        let prev = s.agent.state.global_step;
        let now = prev + cfg.num_envs as u64;
        let epsilon = cfg.epsilon(prev);
        s.agent.act(&s.obs, epsilon, &mut actions);
        let step = s.envs.step(&actions)?;
        check_step(&step, O, now)?;
        for (i, &action) in actions.iter().enumerate() {
            let (obs, next) = (&s.obs[i * O..(i + 1) * O], &step.final_obs[i * O..(i + 1) * O]);
            s.agent.observe(i, obs, action, step.rewards[i], next, step.terminated[i], step.truncated[i]);
        }
        s.obs.copy_from_slice(step.obs);
        s.agent.state.global_step = now;
        for (_, episode) in step.episodes {
            s.agent.state.episodes += 1;
            s.stats.record_episode(&mut run, episode, epsilon, now)?;
        }

        // Learn on schedule, then update the target network.
        if now >= cfg.learning_starts && s.agent.replay_len() >= cfg.batch_size {
            for _ in 0..crossings(prev, now, cfg.train_frequency) * cfg.gradient_steps {
                let update = s.agent.train_step(cfg.beta(now))?;
                s.stats.record_update(&mut run, update, now, clock)?;
            }
            if crossings(prev, now, cfg.target_network_frequency) > 0 {
                s.agent.update_target();
            }
        }

        // Evaluate greedily; stop when solved.
        if now >= cfg.learning_starts && cfg.eval_episodes > 0 && crossings(prev, now, cfg.eval_frequency) > 0 {
            s.stats.evals += 1;
            let result = greedy_evaluation(&s.agent, make_env, cfg.eval_episodes, eval_seed(run.seed, s.stats.evals))?;
            log_evaluation(&mut run, &result, s.agent.last_q_values(), now)?;
            if cfg.solve_threshold.is_some_and(|t| result.mean() >= t) {
                solved = Some((now, result));
                break;
            }
        }
        if crossings(prev, now, 250) > 0 {
            run.progress().update(now, s.stats.recent_mean());
        }
        if run.tick(now, s)? == Control::Stop {
            return Ok(Outcome::Stopped { done: now });
        }
    }
    finish(s, run, make_env, solved).map(Outcome::Finished)
}

/// Ends the run: the evaluation that solved it (`solved`: the env step and the result) or a
/// final one, then the final checkpoint and `summary.json` through the run layer.
fn finish<Q, E, const O: usize, const A: usize>(
    s: &Training<Q, E, O, A>,
    mut run: Run<Config>,
    make_env: &dyn Fn() -> E,
    solved: Option<(u64, EvalResult)>,
) -> Result<Summary, Error>
where
    Q: QFunction<O, A>,
    E: Env<Act = usize> + 'static,
{
    let (done, episodes) = (s.agent.state.global_step, run.config.eval_episodes);
    let solved_at_step = solved.as_ref().map(|(step, _)| *step);
    let last_eval = match solved {
        Some((_, result)) => Some(result),
        None if episodes > 0 => Some(greedy_evaluation(&s.agent, make_env, episodes, eval_seed(run.seed, 999))?),
        None => None,
    };
    let last_eval = last_eval.as_ref().map(EvalStats::from);
    let (updates, threshold) = (s.agent.state.gradient_steps, run.config.solve_threshold);
    let metrics = RlMetrics::new(updates, solved_at_step, threshold, last_eval.as_ref());
    run.scalar("eval/final_mean_return", metrics.eval_mean_return.unwrap_or(f64::NAN), done)?;
    Ok(Summary::finish(run, done, s, &metrics)?)
}

impl LoopStats {
    /// Logs a finished episode and keeps its return for the progress bar.
    fn record_episode(
        &mut self,
        run: &mut Run<Config>,
        ep: &EpisodeStats,
        epsilon: f64,
        step: u64,
    ) -> Result<(), Error> {
        run.scalar("charts/episodic_return", ep.ret, step)?;
        run.scalar("charts/episodic_length", ep.len as f64, step)?;
        run.scalar("charts/epsilon", epsilon, step)?;
        self.recent_returns.push_back(ep.ret);
        if self.recent_returns.len() > 20 {
            self.recent_returns.pop_front();
        }
        Ok(())
    }

    /// Adds a gradient step's statistics; every [`LOG_EVERY`] steps logs their averages and the
    /// env steps per second since `clock` = (start, env steps then).
    fn record_update(
        &mut self,
        run: &mut Run<Config>,
        update: TrainStats,
        step: u64,
        clock: (Instant, u64),
    ) -> Result<(), Error> {
        for (sum, x) in self.sums.iter_mut().zip([update.loss, update.mean_q, update.grad_norm]) {
            *sum += x as f64;
        }
        self.count += 1;
        if self.count == LOG_EVERY {
            let n = self.count as f64;
            run.scalar("losses/td_loss", self.sums[0] / n, step)?;
            run.scalar("losses/q_values", self.sums[1] / n, step)?;
            run.scalar("losses/grad_norm", self.sums[2] / n, step)?;
            run.scalar("charts/SPS", (step - clock.1) as f64 / clock.0.elapsed().as_secs_f64(), step)?;
            (self.sums, self.count) = ([0.0; 3], 0);
        }
        Ok(())
    }

    /// Mean of the recent episode returns, if any.
    fn recent_mean(&self) -> Option<f64> {
        let n = self.recent_returns.len();
        (n > 0).then(|| self.recent_returns.iter().sum::<f64>() / n as f64)
    }
}

/// Logs an evaluation (mean, std, and the last batch's Q-values as a histogram) and shows it.
fn log_evaluation(run: &mut Run<Config>, result: &EvalResult, q_values: &[f32], step: u64) -> Result<(), Error> {
    run.scalar("eval/mean_return", result.mean(), step)?;
    run.scalar("eval/std_return", result.std(), step)?;
    if !q_values.is_empty() {
        let w = run.writer()?;
        let path = w.path().to_path_buf();
        w.histogram("eval/batch_q_values", q_values, step).map_err(|source| RunError::Io { path, source })?;
    }
    run.progress().message(format!("eval {:.1}", result.mean()));
    Ok(())
}

/// The agent's greedy policy on `episodes` envs from `make_env`, episode i seeded `seed + i`.
fn greedy_evaluation<Q: QFunction<O, A>, E: Env<Act = usize>, const O: usize, const A: usize>(
    agent: &Dqn<Q, O, A>,
    make_env: &dyn Fn() -> E,
    episodes: usize,
    seed: u64,
) -> Result<EvalResult, EnvError> {
    evaluate_greedy(make_env, episodes, seed, |obs| Ok(agent.greedy_actions(obs)))
}

/// Stops at the first NaN or infinity in a step's observations or rewards, naming the env.
fn check_step(step: &VecStep<'_>, obs_dim: usize, env_step: u64) -> Result<(), Error> {
    let check = |what: &'static str, values: &[f32], width: usize| {
        check_finite(what, values, env_step).map_err(|e| Error::NonFiniteEnv {
            what,
            env: e.index / width,
            value: e.value,
            env_step,
        })
    };
    check("observation", step.final_obs, obs_dim)?;
    check("observation", step.obs, obs_dim)?;
    check("reward", step.rewards, 1)
}

/// How many multiples of `every` lie in `(prev, now]` (none when `every` is 0).
fn crossings(prev: u64, now: u64, every: u64) -> u64 {
    match (now.checked_div(every), prev.checked_div(every)) {
        (Some(a), Some(b)) => a - b,
        _ => 0,
    }
}
