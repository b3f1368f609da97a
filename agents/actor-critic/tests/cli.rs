//! The run conventions of the actor-critic examples: a run writes config, TensorBoard events,
//! a checkpoint and summary.json; `--eval` reads the checkpoint back; `--resume` continues the
//! step count; bad input is an error.

use dfdx::prelude::*;
use glimpse::run::RunArgs;
use glimpse_actor_critic::cli::{run_example, AlgoConfig};
use glimpse_actor_critic::{DiscretePolicy, PpoConfig, SeparateDiscrete};

fn policy() -> DiscretePolicy<<SeparateDiscrete<4, 2, 16> as BuildOnDevice<Cpu, f32>>::Built, 2> {
    let dev = Cpu::seed_from_u64(0);
    DiscretePolicy::new(dev.build_module::<SeparateDiscrete<4, 2, 16>, f32>(), dev)
}

fn cfg(total: u64) -> AlgoConfig {
    AlgoConfig::Ppo(PpoConfig {
        num_envs: 2,
        num_steps: 64,
        total_timesteps: total,
        eval_every: 4,
        eval_episodes: 3,
        ..PpoConfig::default()
    })
}

#[test]
fn run_eval_and_resume_follow_the_run_directory_conventions() {
    let dir = std::env::temp_dir().join(format!("glimpse-ac-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = RunArgs { seed: 4, run_dir: Some(dir.clone()), ..RunArgs::default() };
    let summary = run_example::<_, _, 4>("test", &args, cfg(512), glimpse_envs::cartpole_v1, policy()).unwrap();
    assert_eq!(summary["env_steps"], 512);
    assert!(summary["eval_mean_return"].as_f64().unwrap() >= 8.0);
    for f in ["config.json", "summary.json", "checkpoint/policy.safetensors", "checkpoint/adam_m1.safetensors"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let events = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents"));
    assert_eq!(events.count(), 1);

    let eval = RunArgs { seed: 4, eval: Some(dir.clone()), ..RunArgs::default() };
    let e = run_example::<_, _, 4>("test", &eval, cfg(512), glimpse_envs::cartpole_v1, policy()).unwrap();
    assert!(e["eval_mean_return"].as_f64().is_some());
    assert!(dir.join("eval.json").is_file());

    // Resuming uses the saved configuration (the one passed in is ignored) with --config on top.
    let more = dir.with_extension("more.json");
    std::fs::write(&more, r#"{"total_timesteps": 1024}"#).unwrap();
    let resume = RunArgs { seed: 9, resume: Some(dir.clone()), config: Some(more.clone()), ..RunArgs::default() };
    let r = run_example::<_, _, 4>("test", &resume, cfg(99_999), glimpse_envs::cartpole_v1, policy()).unwrap();
    assert_eq!(r["env_steps"], 1024);
    assert_eq!(r["seed"], 4);
    // Nothing left to train is an error, and so is a directory that is not a run.
    assert!(run_example::<_, _, 4>("test", &resume, cfg(1024), glimpse_envs::cartpole_v1, policy()).is_err());
    let not_a_run = RunArgs { eval: Some(dir.join("checkpoint")), ..RunArgs::default() };
    assert!(run_example::<_, _, 4>("test", &not_a_run, cfg(1024), glimpse_envs::cartpole_v1, policy()).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&more).unwrap();
}
