//! The run conventions of the actor-critic examples: a run writes config, TensorBoard events,
//! a checkpoint and summary.json; `--eval` reads the checkpoint back; `--resume` continues the
//! step count; bad input is an error.

use dfdx::prelude::*;
use glimpse::checkpoint::current_snapshot;
use glimpse::run::RunArgs;
use glimpse_actor_critic::cli::{run_example, run_example_until, AlgoConfig};
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
    for f in ["config.json", "summary.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let snapshot = current_snapshot(&dir.join("checkpoint")).unwrap();
    for f in ["policy.safetensors", "adam_m1.safetensors", "state.json"] {
        assert!(snapshot.join(f).is_file(), "checkpoint {f} missing");
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

/// The final checkpoint's files, except `state.json`'s wall time.
fn final_checkpoint(dir: &std::path::Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    let snap = current_snapshot(&dir.join("checkpoint")).unwrap();
    let files = ["policy.safetensors", "adam_m1.safetensors", "adam_m2.safetensors", "adam.json"];
    let bytes = files.iter().map(|f| std::fs::read(snap.join(f)).unwrap()).collect();
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("state.json")).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("wall_seconds");
    (bytes, state)
}

#[test]
fn a_stopped_and_resumed_run_equals_the_uninterrupted_one() {
    use rand::{Rng, SeedableRng};
    // The trainer's generator is ChaCha12, the very stream `StdRng` gave before it was saved.
    let (mut a, mut b) = (rand::rngs::StdRng::seed_from_u64(5), rand_chacha::ChaCha12Rng::seed_from_u64(5));
    assert_eq!((0..4).map(|_| a.gen::<u64>()).collect::<Vec<_>>(), (0..4).map(|_| b.gen::<u64>()).collect::<Vec<_>>());

    for (name, algo) in [
        ("ppo", cfg(2048)),
        (
            "a2c",
            AlgoConfig::A2c(glimpse_actor_critic::A2cConfig {
                num_envs: 4,
                total_timesteps: 2000,
                eval_every: 20,
                eval_episodes: 3,
                ..Default::default()
            }),
        ),
    ] {
        let base = std::env::temp_dir().join(format!("glimpse-ac-exact-{name}-{}", std::process::id()));
        let (whole, split) = (base.join("whole"), base.join("split"));
        let _ = std::fs::remove_dir_all(&base);
        let args = |dir: &std::path::PathBuf| RunArgs { seed: 6, run_dir: Some(dir.clone()), ..RunArgs::default() };
        let mut expected =
            run_example::<_, _, 4>("test", &args(&whole), algo.clone(), glimpse_envs::cartpole_v1, policy()).unwrap();

        let stopped = run_example_until::<_, _, 4>(
            "test",
            &args(&split),
            algo.clone(),
            glimpse_envs::cartpole_v1,
            policy(),
            Some(700),
        )
        .unwrap();
        let at = stopped["stopped_at_step"].as_u64().unwrap();
        assert!((700..1000).contains(&at), "{stopped}");
        assert!(!split.join("summary.json").exists());
        let (_, state) = final_checkpoint(&split);
        let lengths = &state["train_loop"]["envs"]["Ok"]["lengths"];
        assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "mid-episode: {lengths}");

        // Another process: the policy passed in is freshly initialised with another seed.
        let dev = Cpu::seed_from_u64(77);
        let fresh = DiscretePolicy::new(dev.build_module::<SeparateDiscrete<4, 2, 16>, f32>(), dev);
        let resume = RunArgs { resume: Some(split.clone()), ..RunArgs::default() };
        let mut got = run_example::<_, _, 4>("test", &resume, cfg(1), glimpse_envs::cartpole_v1, fresh).unwrap();
        for s in [&mut expected, &mut got] {
            s.as_object_mut().unwrap().remove("wall_seconds");
        }
        assert_eq!(got, expected, "{name}: summary");
        assert_eq!(final_checkpoint(&split), final_checkpoint(&whole), "{name}: weights, optimizer, learning curve");
        let (_, state) = final_checkpoint(&whole);
        assert!(state["train_loop"]["curve"].as_array().unwrap().len() > 5);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
