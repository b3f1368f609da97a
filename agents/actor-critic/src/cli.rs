//! What every actor-critic example does around training: the shared run conventions
//! (`--seed`, `--run-dir`, `--config`, `--resume`, `--eval`), TensorBoard scalars, checkpoints and
//! `summary.json`.

use std::error::Error as StdError;

use dfdx::nn::SaveToSafetensors;
use dfdx::tensor::Cpu;
use glimpse::checkpoint::{
    current_snapshot, load_json, load_weights, save_json, save_snapshot, save_weights, CheckpointError,
};
use glimpse::run::{load_config, overlay_config, summary_line, Progress, RunArgs, RunDir};
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::policy::ActorCritic;
use crate::ppo::{self, evaluate, PpoConfig, UpdateContext, UpdateStats};
use crate::A2cConfig;

/// Which algorithm an example runs, with its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "algo", rename_all = "lowercase")]
pub enum AlgoConfig {
    /// Proximal Policy Optimization.
    Ppo(PpoConfig),
    /// Synchronous advantage actor-critic.
    A2c(A2cConfig),
}

impl AlgoConfig {
    fn ppo(&self) -> PpoConfig {
        match self {
            AlgoConfig::Ppo(c) => c.clone(),
            AlgoConfig::A2c(c) => c.to_ppo(),
        }
    }

    fn set_seed(&mut self, seed: u64) {
        match self {
            AlgoConfig::Ppo(c) => c.seed = seed,
            AlgoConfig::A2c(c) => c.seed = seed,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AlgoConfig::Ppo(_) => "ppo",
            AlgoConfig::A2c(_) => "a2c",
        }
    }
}

/// Progress saved beside the weights, for `--resume`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    env_steps: u64,
    updates: usize,
    wall_seconds: f64,
    /// Set once an evaluation reached the target: the run is finished.
    #[serde(default)]
    solved_at_step: Option<u64>,
    /// The training loop (envs, sampling stream): a resumed run continues bit-identically.
    #[serde(default)]
    train_loop: Option<ppo::LoopState>,
}

/// Writes a checkpoint snapshot (policy, optimizer, state) into `run`'s checkpoint directory.
fn save_checkpoint<N: SaveToSafetensors<f32, Cpu>>(
    run: &RunDir,
    net: &N,
    opt: &glimpse::optim::Adam<N>,
    state: &State,
) -> Result<(), CheckpointError> {
    save_snapshot(&run.checkpoint_dir(), |snap| -> Result<(), CheckpointError> {
        save_weights(net, &snap.join("policy.safetensors"))?;
        opt.save(snap, "adam")?;
        save_json(state, &snap.join("state.json"))
    })?;
    Ok(())
}

fn log_update(run: &mut RunDir, s: &UpdateStats, step_offset: u64) -> Result<(), Box<dyn StdError>> {
    let w = run.writer()?;
    let step = s.env_steps + step_offset;
    for (tag, v) in [
        ("charts/learning_rate", s.learning_rate),
        ("losses/policy_loss", s.policy_loss),
        ("losses/value_loss", s.value_loss),
        ("losses/entropy", s.entropy),
        ("losses/approx_kl", s.approx_kl),
        ("losses/clip_fraction", s.clip_fraction),
        ("losses/grad_norm", s.grad_norm),
        ("losses/explained_variance", s.explained_variance),
        ("charts/wall_seconds", s.wall_seconds),
    ] {
        if v.is_finite() {
            w.scalar(tag, v, step)?;
        }
    }
    for e in &s.episodes {
        w.scalar("charts/episodic_return", e.ret, step)?;
        w.scalar("charts/episodic_length", e.len as f64, step)?;
    }
    if let Some(r) = s.eval_mean_return {
        w.scalar("eval/mean_return", r, step)?;
    }
    Ok(())
}

/// Runs one actor-critic example end to end and returns its summary: trains `policy` on
/// `cfg.num_envs` envs from `make_env` (or, with `--eval DIR`, only evaluates DIR's checkpoint).
pub fn run_example<E, P, const O: usize>(
    example: &str,
    args: &RunArgs,
    cfg: AlgoConfig,
    make_env: impl Fn() -> E,
    policy: P,
) -> Result<serde_json::Value, Box<dyn StdError>>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    run_example_until(example, args, cfg, make_env, policy, None)
}

/// [`run_example`], but when `stop_after` is given, stops after the first update that reaches that
/// many env steps: writes a checkpoint and returns `{"stopped_at_step": N}` without a summary.
/// `--resume` continues bit-identically: the checkpoint holds the envs' states and the sampling
/// stream, and the learning-rate schedule goes on from the saved update.
pub fn run_example_until<E, P, const O: usize>(
    example: &str,
    args: &RunArgs,
    mut cfg: AlgoConfig,
    make_env: impl Fn() -> E,
    mut policy: P,
    stop_after: Option<u64>,
) -> Result<serde_json::Value, Box<dyn StdError>>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    // A resumed run continues with the configuration it saved (seed included); --config may
    // still change settings, e.g. raise total_timesteps (which stretches the learning-rate
    // schedule: the run is then no longer the same as one with that budget from the start).
    match &args.resume {
        Some(dir) => cfg = load_config(&dir.join("config.json"))?,
        None => cfg.set_seed(args.seed),
    }
    if let Some(path) = &args.config {
        cfg = overlay_config(&cfg, path)?;
    }

    if let Some(dir) = &args.eval {
        let run = RunDir::open(dir)?;
        load_weights(policy.net_mut(), &current_snapshot(&run.checkpoint_dir())?.join("policy.safetensors"))?;
        let episodes = cfg.ppo().eval_episodes;
        let mean = evaluate::<E, P, O>(&mut make_env(), &policy, episodes, args.seed + 30_000)?;
        let summary = serde_json::json!({ "example": example, "eval_episodes": episodes, "eval_mean_return": mean });
        save_json(&summary, &run.path().join("eval.json"))?;
        println!("{}", summary_line(&summary));
        return Ok(summary);
    }

    let mut opt = ppo::optimizer::<O, P>(&policy, &cfg.ppo());
    let (mut run, state) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let snap = current_snapshot(&run.checkpoint_dir())?;
            load_weights(policy.net_mut(), &snap.join("policy.safetensors"))?;
            opt.load(&snap, "adam")?;
            let state: State = load_json(&snap.join("state.json"))?;
            if state.train_loop.is_none() {
                return Err(format!(
                    "{}: cannot resume exactly: the checkpoint holds no training loop state (written by an older version)",
                    run.path().display()
                )
                .into());
            }
            (run, state)
        }
        None => (RunDir::create(example, args.run_dir.clone())?, State::default()),
    };
    let train_cfg = cfg.ppo();
    if let Some(step) = state.solved_at_step {
        return Err(format!("{}: the run is finished (solved at env step {step})", run.path().display()).into());
    }
    if state.env_steps >= train_cfg.total_timesteps {
        return Err(format!(
            "{}: the run already took {} of its {} steps; raise total_timesteps (--config) to continue",
            run.path().display(),
            state.env_steps,
            train_cfg.total_timesteps
        )
        .into());
    }
    run.write_config(&cfg)?;
    std::fs::create_dir_all(run.checkpoint_dir())?;

    let envs = (0..train_cfg.num_envs).map(|_| make_env()).collect();
    let mut eval_env = make_env();
    let progress = Progress::new(train_cfg.total_timesteps);
    let prior_seconds = state.wall_seconds;
    let mut failure: Option<Box<dyn StdError>> = None;
    let mut stopped_at = None;
    let outcome = ppo::train_from::<E, P, O>(
        envs,
        &mut eval_env,
        &mut policy,
        &mut opt,
        &train_cfg,
        state.train_loop.as_ref(),
        |c: &UpdateContext<'_, P, O>| {
            let s = c.stats;
            let recent = (!s.episodes.is_empty())
                .then(|| s.episodes.iter().map(|e| e.ret).sum::<f64>() / s.episodes.len() as f64);
            progress.update(s.env_steps, recent);
            let stop = stop_after.is_some_and(|n| s.env_steps >= n) && s.env_steps < train_cfg.total_timesteps;
            // Every evaluation (the last update and a solving one included) writes a checkpoint.
            let checkpoint = s.eval_mean_return.is_some() || stop;
            let result = log_update(&mut run, s, 0).and_then(|_| {
                if checkpoint {
                    let st = State {
                        env_steps: s.env_steps,
                        updates: s.update,
                        wall_seconds: prior_seconds + s.wall_seconds,
                        solved_at_step: train_cfg
                            .target_return
                            .filter(|&t| s.eval_mean_return.is_some_and(|m| m >= t))
                            .map(|_| s.env_steps),
                        train_loop: Some((c.loop_state)()),
                    };
                    save_checkpoint(&run, c.policy.net(), c.opt, &st)?;
                }
                Ok(())
            });
            if let (Err(e), None) = (result, &failure) {
                failure = Some(e);
            }
            if stop {
                stopped_at = Some(s.env_steps);
            }
            stop || failure.is_some()
        },
    )?;
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    run.writer()?.flush()?;
    if let Some(step) = stopped_at {
        println!("stopped at env step {step}; continue with --resume {}", run.path().display());
        return Ok(serde_json::json!({ "stopped_at_step": step }));
    }

    let summary = serde_json::json!({
        "example": example,
        "algo": cfg.name(),
        "seed": cfg.ppo().seed,
        "solved": outcome.solved_at_step.is_some(),
        "solved_at_step": outcome.solved_at_step,
        "eval_mean_return": outcome.eval_mean_return,
        "target_return": train_cfg.target_return,
        "env_steps": outcome.env_steps,
        "updates": outcome.updates,
        "wall_seconds": prior_seconds + outcome.wall_seconds,
    });
    run.write_summary(&summary)?;
    println!("{}", summary_line(&summary));
    println!("run dir: {}", run.path().display());
    Ok(summary)
}
