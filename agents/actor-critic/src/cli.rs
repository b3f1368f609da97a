//! What every actor-critic example does around training: the shared run conventions
//! (`--seed`, `--run-dir`, `--config`, `--resume`, `--eval`), TensorBoard scalars, checkpoints and
//! `summary.json`.

use std::error::Error as StdError;

use glimpse::checkpoint::{load_json, load_weights, save_json, save_weights};
use glimpse::run::{load_config, overlay_config, summary_line, Progress, RunArgs, RunDir};
use glimpse::Env;
use serde::{Deserialize, Serialize};

use crate::policy::ActorCritic;
use crate::ppo::{self, evaluate, PpoConfig, UpdateStats};
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
    mut cfg: AlgoConfig,
    make_env: impl Fn() -> E,
    mut policy: P,
) -> Result<serde_json::Value, Box<dyn StdError>>
where
    E: Env + 'static,
    P: ActorCritic<O, Action = E::Act>,
{
    // A resumed run continues with the configuration it saved (seed included); --config may
    // still change settings, e.g. raise total_timesteps.
    match &args.resume {
        Some(dir) => cfg = load_config(&dir.join("config.json"))?,
        None => cfg.set_seed(args.seed),
    }
    if let Some(path) = &args.config {
        cfg = overlay_config(&cfg, path)?;
    }
    let weights_file = |run: &RunDir| run.checkpoint_dir().join("policy.safetensors");

    if let Some(dir) = &args.eval {
        let run = RunDir::open(dir)?;
        load_weights(policy.net_mut(), &weights_file(&run))?;
        let episodes = cfg.ppo().eval_episodes;
        let mean = evaluate::<E, P, O>(&mut make_env(), &policy, episodes, args.seed + 30_000)?;
        let summary = serde_json::json!({ "example": example, "eval_episodes": episodes, "eval_mean_return": mean });
        save_json(&summary, &run.path().join("eval.json"))?;
        println!("{}", summary_line(&summary));
        return Ok(summary);
    }

    let mut opt = ppo::optimizer::<O, P>(&policy, &cfg.ppo());
    let (mut run, mut state) = match &args.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            load_weights(policy.net_mut(), &weights_file(&run))?;
            opt.load(&run.checkpoint_dir(), "adam")?;
            let state: State = load_json(&run.checkpoint_dir().join("state.json"))?;
            (run, state)
        }
        None => (RunDir::create(example, args.run_dir.clone())?, State::default()),
    };
    let mut train_cfg = cfg.ppo();
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
    // A resumed run trains for what is left (with the saved optimizer state) on fresh env and
    // sampling streams; the learning-rate schedule restarts from its initial value.
    train_cfg.total_timesteps -= state.env_steps;
    train_cfg.seed += state.updates as u64;
    std::fs::create_dir_all(run.checkpoint_dir())?;

    let envs = (0..train_cfg.num_envs).map(|_| make_env()).collect();
    let mut eval_env = make_env();
    let progress = Progress::new(train_cfg.total_timesteps);
    let (offset, prior_updates, prior_seconds) = (state.env_steps, state.updates, state.wall_seconds);
    let mut failure: Option<Box<dyn StdError>> = None;
    let outcome = ppo::train::<E, P, O>(envs, &mut eval_env, &mut policy, &mut opt, &train_cfg, |s, p, o| {
        let recent =
            (!s.episodes.is_empty()).then(|| s.episodes.iter().map(|e| e.ret).sum::<f64>() / s.episodes.len() as f64);
        progress.update(s.env_steps, recent);
        let checkpoint = s.eval_mean_return.is_some();
        let result = log_update(&mut run, s, offset).and_then(|_| {
            if checkpoint {
                save_weights(p.net(), &weights_file(&run))?;
                o.save(&run.checkpoint_dir(), "adam")?;
                let st = State {
                    env_steps: offset + s.env_steps,
                    updates: prior_updates + s.update,
                    wall_seconds: prior_seconds + s.wall_seconds,
                };
                save_json(&st, &run.checkpoint_dir().join("state.json"))?;
            }
            Ok(())
        });
        if let (Err(e), None) = (result, &failure) {
            failure = Some(e);
        }
    })?;
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    state = State {
        env_steps: offset + outcome.env_steps,
        updates: prior_updates + outcome.updates,
        wall_seconds: prior_seconds + outcome.wall_seconds,
    };
    save_weights(policy.net(), &weights_file(&run))?;
    opt.save(&run.checkpoint_dir(), "adam")?;
    save_json(&state, &run.checkpoint_dir().join("state.json"))?;
    run.writer()?.flush()?;

    let summary = serde_json::json!({
        "example": example,
        "algo": cfg.name(),
        "seed": cfg.ppo().seed,
        "solved": outcome.solved_at_step.is_some(),
        "solved_at_step": outcome.solved_at_step.map(|s| s + offset),
        "eval_mean_return": outcome.eval_mean_return,
        "target_return": train_cfg.target_return,
        "env_steps": state.env_steps,
        "updates": state.updates,
        "wall_seconds": state.wall_seconds,
    });
    run.write_summary(&summary)?;
    println!("{}", summary_line(&summary));
    println!("run dir: {}", run.path().display());
    Ok(summary)
}
