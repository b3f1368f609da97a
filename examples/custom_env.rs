//! Your own environment in a few dozen lines: a point that must reach a target in the plane.
//!
//! `Reach` implements [`Env`] with a box observation space, a box action space, a seeded reset and
//! validated actions; [`TimeLimit`] truncates its episodes and a [`VecEnv`] steps 16 copies on two
//! threads. The example compares a random policy with a heuristic that heads for the target, then
//! trains PPO on `Reach` through the library API (a run directory with TensorBoard events,
//! checkpoints and `summary.json`) and evaluates the saved policy greedily. `Reach` also saves and
//! restores its state (position, target, generator), which is what lets `--resume` continue a run on
//! it exactly; the example checks that a restored copy plays on identically.
//!
//! ```sh
//! cargo run --release --example custom_env -- --seed 0                 # baselines, PPO, evaluation
//! cargo run --release --example custom_env -- --total-timesteps 0       # baselines only
//! tensorboard --logdir runs                                             # the PPO run's curves
//! ```

use std::path::PathBuf;

use clap::Parser;
use glimpse::prelude::*;
use glimpse_actor_critic::{PpoConfig, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// Largest move per step along each axis.
const MAX_SPEED: f32 = 0.05;
/// Distance at which the target counts as reached.
const REACHED: f32 = 0.05;

/// Move a point in `[-1, 1]²` to a target. Observation: `[x, y, target_x - x, target_y - y]`;
/// action: a velocity in `[-1, 1]²` (scaled by `MAX_SPEED`); reward: minus the distance left,
/// plus 10 on reaching the target, which terminates the episode.
///
/// Serde makes the whole state savable: `ChaCha12Rng` is the generator behind `StdRng`, with the
/// same stream, but unlike `StdRng` it can be serialized.
#[derive(serde::Serialize, serde::Deserialize)]
struct Reach {
    pos: [f32; 2],
    target: [f32; 2],
    rng: ChaCha12Rng,
}

impl Reach {
    fn new() -> Self {
        Self { pos: [0.0; 2], target: [0.0; 2], rng: ChaCha12Rng::seed_from_u64(0) }
    }

    fn obs(&self) -> [f32; 4] {
        [self.pos[0], self.pos[1], self.target[0] - self.pos[0], self.target[1] - self.pos[1]]
    }
}

impl Env for Reach {
    type Obs = [f32; 4];
    type Act = [f32; 2];

    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![-1.0, -1.0, -2.0, -2.0], vec![1.0, 1.0, 2.0, 2.0]).into()
    }

    fn action_space(&self) -> Space {
        BoxSpace::new(vec![-1.0; 2], vec![1.0; 2]).into()
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 4], Info), EnvError> {
        if let Some(seed) = seed {
            self.rng = ChaCha12Rng::seed_from_u64(seed);
        }
        self.pos = [self.rng.gen_range(-1.0..1.0), self.rng.gen_range(-1.0..1.0)];
        self.target = [self.rng.gen_range(-1.0..1.0), self.rng.gen_range(-1.0..1.0)];
        Ok((self.obs(), Info::default()))
    }

    fn step(&mut self, action: &[f32; 2]) -> Result<Step<[f32; 4]>, EnvError> {
        if !action.iter().all(|a| (-1.0..=1.0).contains(a)) {
            return Err(EnvError::InvalidAction(format!("{action:?} is not in [-1, 1]²")));
        }
        for (p, a) in self.pos.iter_mut().zip(action) {
            *p = (*p + a * MAX_SPEED).clamp(-1.0, 1.0);
        }
        let [_, _, dx, dy] = self.obs();
        let distance = dx.hypot(dy);
        let terminated = distance < REACHED;
        let reward = -distance as f64 + if terminated { 10.0 } else { 0.0 };
        Ok(Step { obs: self.obs(), reward, terminated, truncated: false, info: Info::default() })
    }

    fn save_state(&self) -> Result<EnvState, EnvError> {
        to_env_state("Reach", self)
    }

    fn restore_state(&mut self, state: &EnvState) -> Result<(), EnvError> {
        *self = from_env_state("Reach", state)?;
        Ok(())
    }
}

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Seed of the environments and of the random policy.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Episodes to average over, per policy.
    #[arg(long, default_value_t = 200)]
    episodes: usize,
    /// PPO's training budget in env steps (0: skip training).
    #[arg(long, default_value_t = 200_000)]
    total_timesteps: u64,
    /// The PPO run's directory [default: runs/custom_env_ppo-<YYYYmmdd-HHMMSS>].
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

/// The environment as agents see it: `Reach` cut at 200 steps.
fn make_env() -> TimeLimit<Reach> {
    TimeLimit::new(Reach::new(), 200)
}

/// Mean return and length of the first `episodes` episodes that `policy` plays on 16 envs.
fn evaluate(args: &Args, mut policy: impl FnMut(&[f32]) -> [f32; 2]) -> Result<(f64, f64), EnvError> {
    let envs = (0..16).map(|_| make_env()).collect();
    let mut venv = VecEnv::new(envs, 2)?;
    venv.reset(Some(args.seed))?;
    let (mut returns, mut lengths) = (vec![], vec![]);
    let mut actions = vec![[0.0; 2]; venv.num_envs()];
    while returns.len() < args.episodes {
        for (a, obs) in actions.iter_mut().zip(venv.observations().chunks_exact(4)) {
            *a = policy(obs);
        }
        for (_, stats) in venv.step(&actions)?.episodes {
            returns.push(stats.ret);
            lengths.push(stats.len as f64);
        }
    }
    let mean = |v: &[f64]| v[..args.episodes].iter().sum::<f64>() / args.episodes as f64;
    Ok((mean(&returns), mean(&lengths)))
}

fn main() {
    exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let space = Reach::new().action_space();
    let space = space.as_box().ok_or("Reach has a box action space")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let random = evaluate(&args, |_| {
        let a = space.sample(&mut rng);
        [a[0], a[1]]
    })?;
    // Head straight for the target at full speed, slowing down on the last step.
    let heuristic = evaluate(&args, |obs| {
        let (dx, dy) = (obs[2], obs[3]);
        let distance = dx.hypot(dy).max(1e-6);
        let speed = (distance / MAX_SPEED).min(1.0) / distance;
        [dx * speed, dy * speed]
    })?;
    println!("Reach (time limit 200), {} episodes per policy, seed {}", args.episodes, args.seed);
    println!("{:<10} {:>12} {:>12}", "policy", "mean return", "mean length");
    for (name, (ret, len)) in [("random", random), ("heuristic", heuristic)] {
        println!("{name:<10} {ret:>12.2} {len:>12.1}");
    }

    // Train PPO on it: the trainer checks Reach's spaces against its network (4 observation
    // values, a box of 2 actions), writes TensorBoard events, checkpoints and summary.json.
    if args.total_timesteps > 0 {
        let cfg = PpoConfig {
            total_timesteps: args.total_timesteps,
            eval_frequency: 20_480,
            solve_threshold: Some(-4.0), // near the heuristic
            ..PpoConfig::pendulum()
        };
        let dir = args.run_dir.clone().unwrap_or_else(|| glimpse::run::default_run_dir("custom_env_ppo"));
        let trainer = Trainer::gaussian::<4, 2>(cfg, make_env)?.seed(args.seed).run_dir(&dir);
        let summary = trainer.train()?;
        // Greedy evaluation of the saved policy, on episodes it never trained on.
        let ppo = trainer.evaluate(&dir, args.episodes, args.seed + 1_000_000)?;
        println!(
            "{:<10} {:>12.2} {:>12}   ({} env steps, {:.1} s)",
            "PPO",
            ppo.mean(),
            "",
            summary.env_steps,
            summary.wall_seconds
        );
    }

    let mut env = make_env();
    env.reset(Some(args.seed))?;
    println!("an action outside the box is refused: {}", env.step(&[2.0, 0.0]).unwrap_err());

    // Save mid-episode, restore into a fresh env, and play both on: same steps, same next reset.
    for _ in 0..10 {
        env.step(&[0.3, -0.2])?;
    }
    let saved = env.save_state()?;
    let mut copy = TimeLimit::new(Reach::new(), 200);
    copy.restore_state(&saved)?;
    let mut identical = true;
    for t in 0..400 {
        let action = [(t as f32 * 0.37).sin(), (t as f32 * 0.23).cos()];
        let (a, b) = (env.step(&action)?, copy.step(&action)?);
        identical &= (a.obs, a.reward, a.terminated, a.truncated) == (b.obs, b.reward, b.terminated, b.truncated);
        if a.terminated || a.truncated {
            identical &= env.reset(None)?.0 == copy.reset(None)?.0;
        }
    }
    println!("a restored copy plays 400 steps (with resets) identically: {identical}");
    if !identical {
        return Err("the restored copy diverged".into());
    }
    Ok(())
}
