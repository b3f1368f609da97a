//! The shared run conventions for REINFORCE examples: `--seed`, `--run-dir`, `--config`,
//! `--resume`, `--eval`, TensorBoard scalars, checkpoints (both networks and both optimizers) and
//! `summary.json`.

use std::error::Error as StdError;
use std::path::Path;

use glimpse::checkpoint::{
    current_snapshot, load_json, load_weights, save_json, save_snapshot, save_weights, CheckpointError,
};
use glimpse::run::{load_config, overlay_config, summary_line, Progress, RunArgs, RunDir};
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::{evaluate, train_from, LoopState, Reinforce, ReinforceConfig, TrainOutcome, UpdateStats};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    env_steps: u64,
    updates: usize,
    wall_seconds: f64,
    running_mean: Option<f64>,
    /// Set once an evaluation reached the target: the run is finished.
    #[serde(default)]
    solved_at_step: Option<u64>,
    /// The training loop (envs, sampling stream, curves): a resumed run continues bit-identically.
    #[serde(default)]
    train_loop: Option<LoopState>,
}

/// Writes a checkpoint snapshot (both networks, both optimizers, state) into `dir`.
fn save<const O: usize, const A: usize>(
    dir: &Path,
    agent: &Reinforce<O, A>,
    st: &State,
) -> Result<(), Box<dyn StdError>> {
    save_snapshot(dir, |snap| -> Result<(), CheckpointError> {
        save_weights(&agent.policy, &snap.join("policy.safetensors"))?;
        save_weights(&agent.value, &snap.join("value.safetensors"))?;
        agent.policy_opt.save(snap, "policy_adam")?;
        agent.value_opt.save(snap, "value_adam")?;
        save_json(st, &snap.join("state.json"))
    })?;
    Ok(())
}

fn log_update(run: &mut RunDir, s: &UpdateStats, offset: u64) -> Result<(), Box<dyn StdError>> {
    let w = run.writer()?;
    let step = s.env_steps + offset;
    w.scalar("losses/policy_loss", s.policy_loss, step)?;
    w.scalar("losses/entropy", s.entropy, step)?;
    w.scalar("losses/grad_norm", s.grad_norm, step)?;
    w.scalar("charts/samples", s.samples as f64, step)?;
    if let Some(v) = s.value_loss {
        w.scalar("losses/value_loss", v, step)?;
    }
    if let Some(v) = s.grad_variance {
        w.scalar("losses/grad_variance", v, step)?;
    }
    for &r in &s.episode_returns {
        w.scalar("charts/episodic_return", r, step)?;
    }
    if let Some(r) = s.eval_mean_return {
        w.scalar("eval/mean_return", r, step)?;
    }
    Ok(())
}

/// Runs one REINFORCE example end to end (or, with `--eval DIR`, only evaluates DIR's checkpoint);
/// returns the summary and the training outcome.
pub fn run_example<E, const O: usize, const A: usize>(
    example: &str,
    args: &RunArgs,
    cfg: ReinforceConfig,
    make_env: impl Fn() -> E,
) -> Result<(serde_json::Value, TrainOutcome), Box<dyn StdError>>
where
    E: Env<Act = usize> + 'static,
{
    run_example_until::<E, O, A>(example, args, cfg, make_env, None)
}

/// [`run_example`], but when `stop_after` is given, stops after the first update that reaches that
/// many env steps: writes a checkpoint and returns `{"stopped_at_step": N}` without a summary.
/// `--resume` then continues bit-identically (envs, sampling stream and curves are saved).
pub fn run_example_until<E, const O: usize, const A: usize>(
    example: &str,
    args: &RunArgs,
    mut cfg: ReinforceConfig,
    make_env: impl Fn() -> E,
    stop_after: Option<u64>,
) -> Result<(serde_json::Value, TrainOutcome), Box<dyn StdError>>
where
    E: Env<Act = usize> + 'static,
{
    // A resumed run continues with the configuration it saved (seed included); --config may
    // still change settings, e.g. raise total_timesteps (then the run is no longer the same as
    // one with that budget from the start).
    match &args.resume {
        Some(dir) => cfg = load_config(&dir.join("config.json"))?,
        None => cfg.seed = args.seed,
    }
    if let Some(path) = &args.config {
        cfg = overlay_config(&cfg, path)?;
    }
    let mut agent = Reinforce::<O, A>::new(&cfg);

    if let Some(dir) = &args.eval {
        let run = RunDir::open(dir)?;
        load_weights(&mut agent.policy, &current_snapshot(&run.checkpoint_dir())?.join("policy.safetensors"))?;
        let mean = evaluate(&mut make_env(), &agent, cfg.eval_episodes, args.seed + 30_000)?;
        let summary =
            serde_json::json!({ "example": example, "eval_episodes": cfg.eval_episodes, "eval_mean_return": mean });
        save_json(&summary, &run.path().join("eval.json"))?;
        println!("{}", summary_line(&summary));
        return Ok((summary, TrainOutcome::default()));
    }

    let (mut run, prior) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let ck = current_snapshot(&run.checkpoint_dir())?;
            load_weights(&mut agent.policy, &ck.join("policy.safetensors"))?;
            load_weights(&mut agent.value, &ck.join("value.safetensors"))?;
            agent.policy_opt.load(&ck, "policy_adam")?;
            agent.value_opt.load(&ck, "value_adam")?;
            let st: State = load_json(&ck.join("state.json"))?;
            if st.train_loop.is_none() {
                return Err(format!(
                    "{}: cannot resume exactly: the checkpoint holds no training loop state (written by an older version)",
                    run.path().display()
                )
                .into());
            }
            agent.running_mean = st.running_mean;
            (run, st)
        }
        None => (RunDir::create(example, args.run_dir.clone())?, State::default()),
    };
    if let Some(step) = prior.solved_at_step {
        return Err(format!("{}: the run is finished (solved at env step {step})", run.path().display()).into());
    }
    if prior.env_steps >= cfg.total_timesteps {
        return Err(format!(
            "{}: the run already took {} of its {} steps; raise total_timesteps (--config) to continue",
            run.path().display(),
            prior.env_steps,
            cfg.total_timesteps
        )
        .into());
    }
    run.write_config(&cfg)?;
    let ck = run.checkpoint_dir();
    std::fs::create_dir_all(&ck)?;

    let envs = (0..cfg.num_envs).map(|_| make_env()).collect();
    let mut eval_env = make_env();
    let progress = Progress::new(cfg.total_timesteps);
    let mut failure: Option<Box<dyn StdError>> = None;
    let mut stopped_at = None;
    let outcome = train_from(envs, &mut eval_env, &mut agent, &cfg, prior.train_loop.as_ref(), |s, a, loop_state| {
        let recent = (!s.episode_returns.is_empty())
            .then(|| s.episode_returns.iter().sum::<f64>() / s.episode_returns.len() as f64);
        progress.update(s.env_steps, recent);
        let stop = stop_after.is_some_and(|n| s.env_steps >= n) && s.env_steps < cfg.total_timesteps;
        let mut result = log_update(&mut run, s, 0);
        // Every evaluation (the last update and a solving one included) writes a checkpoint.
        if result.is_ok() && (s.eval_mean_return.is_some() || stop) {
            let st = State {
                env_steps: s.env_steps,
                updates: s.update,
                wall_seconds: prior.wall_seconds + s.wall_seconds,
                running_mean: a.running_mean,
                solved_at_step: cfg
                    .target_return
                    .filter(|&t| s.eval_mean_return.is_some_and(|m| m >= t))
                    .map(|_| s.env_steps),
                train_loop: Some(loop_state()),
            };
            result = save(&ck, a, &st);
        }
        if let (Err(e), None) = (result, &failure) {
            failure = Some(e);
        }
        if stop {
            stopped_at = Some(s.env_steps);
        }
        stop || failure.is_some()
    })?;
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    run.writer()?.flush()?;
    if let Some(step) = stopped_at {
        println!("stopped at env step {step}; continue with --resume {}", run.path().display());
        return Ok((serde_json::json!({ "stopped_at_step": step }), outcome));
    }
    let summary = serde_json::json!({
        "example": example,
        "algo": "reinforce",
        "baseline": cfg.baseline.name(),
        "seed": cfg.seed,
        "solved": outcome.solved_at_step.is_some(),
        "solved_at_step": outcome.solved_at_step,
        "eval_mean_return": outcome.eval_mean_return,
        "target_return": cfg.target_return,
        "env_steps": outcome.env_steps,
        "updates": outcome.updates,
        "wall_seconds": prior.wall_seconds + outcome.wall_seconds,
    });
    run.write_summary(&summary)?;
    println!("{}", summary_line(&summary));
    println!("run dir: {}", run.path().display());
    Ok((summary, outcome))
}
