//! The shared run conventions for REINFORCE examples: `--seed`, `--run-dir`, `--config`,
//! `--resume`, `--eval`, TensorBoard scalars, checkpoints (both networks and both optimizers) and
//! `summary.json`.

use std::error::Error as StdError;
use std::path::Path;

use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights};
use glimpse::run::{load_config, overlay_config, summary_line, Progress, RunArgs, RunDir};
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::{evaluate, train, Reinforce, ReinforceConfig, TrainOutcome, UpdateStats};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    env_steps: u64,
    updates: usize,
    wall_seconds: f64,
    running_mean: Option<f64>,
}

fn save<const O: usize, const A: usize>(
    dir: &Path,
    agent: &Reinforce<O, A>,
    st: &State,
) -> Result<(), Box<dyn StdError>> {
    save_weights(&agent.policy, &dir.join("policy.safetensors"))?;
    save_weights(&agent.value, &dir.join("value.safetensors"))?;
    agent.policy_opt.save(dir, "policy_adam")?;
    agent.value_opt.save(dir, "value_adam")?;
    save_json(st, &dir.join("state.json"))?;
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
    mut cfg: ReinforceConfig,
    make_env: impl Fn() -> E,
) -> Result<(serde_json::Value, TrainOutcome), Box<dyn StdError>>
where
    E: Env<Act = usize> + 'static,
{
    // A resumed run continues with the configuration it saved (seed included); --config may
    // still change settings, e.g. raise total_timesteps.
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
        load_weights(&mut agent.policy, &run.checkpoint_dir().join("policy.safetensors"))?;
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
            let ck = run.checkpoint_dir();
            load_weights(&mut agent.policy, &ck.join("policy.safetensors"))?;
            load_weights(&mut agent.value, &ck.join("value.safetensors"))?;
            agent.policy_opt.load(&ck, "policy_adam")?;
            agent.value_opt.load(&ck, "value_adam")?;
            let st: State = load_json(&ck.join("state.json"))?;
            agent.running_mean = st.running_mean;
            (run, st)
        }
        None => (RunDir::create(example, args.run_dir.clone())?, State::default()),
    };
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
    let mut train_cfg = cfg.clone();
    // A resumed run trains for what is left on fresh env and sampling streams.
    train_cfg.total_timesteps = cfg.total_timesteps - prior.env_steps;
    train_cfg.seed += prior.updates as u64;

    let envs = (0..cfg.num_envs).map(|_| make_env()).collect();
    let mut eval_env = make_env();
    let progress = Progress::new(train_cfg.total_timesteps);
    let mut failure: Option<Box<dyn StdError>> = None;
    let state_at = |steps: u64, updates: usize, secs: f64, agent: &Reinforce<O, A>| State {
        env_steps: prior.env_steps + steps,
        updates: prior.updates + updates,
        wall_seconds: prior.wall_seconds + secs,
        running_mean: agent.running_mean,
    };
    let outcome = train(envs, &mut eval_env, &mut agent, &train_cfg, |s, a| {
        let recent = (!s.episode_returns.is_empty())
            .then(|| s.episode_returns.iter().sum::<f64>() / s.episode_returns.len() as f64);
        progress.update(s.env_steps, recent);
        let mut result = log_update(&mut run, s, prior.env_steps);
        if result.is_ok() && s.eval_mean_return.is_some() {
            result = save(&ck, a, &state_at(s.env_steps, s.update, s.wall_seconds, a));
        }
        if let (Err(e), None) = (result, &failure) {
            failure = Some(e);
        }
    })?;
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    let st = state_at(outcome.env_steps, outcome.updates, outcome.wall_seconds, &agent);
    save(&ck, &agent, &st)?;
    run.writer()?.flush()?;
    let summary = serde_json::json!({
        "example": example,
        "algo": "reinforce",
        "baseline": cfg.baseline.name(),
        "seed": cfg.seed,
        "solved": outcome.solved_at_step.is_some(),
        "solved_at_step": outcome.solved_at_step.map(|s| s + prior.env_steps),
        "eval_mean_return": outcome.eval_mean_return,
        "target_return": cfg.target_return,
        "env_steps": st.env_steps,
        "updates": st.updates,
        "wall_seconds": st.wall_seconds,
    });
    run.write_summary(&summary)?;
    println!("{}", summary_line(&summary));
    println!("run dir: {}", run.path().display());
    Ok((summary, outcome))
}
