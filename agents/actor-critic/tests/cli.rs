//! PPO and A2C on the run layer: a run writes config, TensorBoard events, checkpoints and
//! summary.json; `--eval` reads the checkpoint back and writes nothing; the guards refuse what
//! cannot continue exactly; a run stopped with `--stop-after` and resumed ends exactly like the
//! uninterrupted one.

use std::path::{Path, PathBuf};

use glimpse::run::snapshot_files;
use glimpse_actor_critic::prelude::*;
use glimpse_actor_critic::Algorithm;

fn ppo(total: u64) -> PpoConfig {
    PpoConfig {
        num_envs: 2,
        num_steps: 64,
        total_timesteps: total,
        eval_frequency: 512,
        eval_episodes: 3,
        checkpoint_frequency: 0,
        ..PpoConfig::default()
    }
}

fn a2c() -> A2cConfig {
    A2cConfig { num_envs: 4, total_timesteps: 2000, eval_frequency: 800, eval_episodes: 3, ..A2cConfig::default() }
}

fn temp(name: &str) -> PathBuf {
    glimpse::testing::scratch_dir("ac", name)
}

fn run_in<C: Algorithm>(cfg: C, args: RunArgs) -> Result<Outcome<Summary>, Error> {
    Trainer::discrete::<4, 2>(cfg, glimpse_envs::cartpole_v1)?.run(&args)
}

fn new_run(dir: &Path, seed: u64, stop_after: Option<u64>) -> RunArgs {
    RunArgs { seed, run_dir: Some(dir.to_path_buf()), stop_after, ..RunArgs::default() }
}

fn resume(dir: &Path, config: Option<PathBuf>) -> RunArgs {
    RunArgs { resume: Some(dir.to_path_buf()), config, ..RunArgs::default() }
}

fn state(dir: &Path) -> serde_json::Value {
    let snap = glimpse::checkpoint::current_snapshot(&dir.join("checkpoint")).unwrap();
    serde_json::from_slice(&std::fs::read(snap.join("state.json")).unwrap()).unwrap()
}

#[test]
fn a_run_its_eval_and_the_guards_follow_the_run_directory_conventions() {
    let dir = temp("conventions");
    let Outcome::Finished(summary) = run_in(ppo(512), new_run(&dir, 4, None)).unwrap() else { panic!("not finished") };
    assert_eq!((summary.env_steps, summary.updates, summary.seed), (512, 4, 4));
    assert_eq!(summary.eval_episodes, Some(3));
    assert!(summary.eval_mean_return.unwrap() >= 8.0 && !summary.solved, "{summary:?}");
    for f in ["config.json", "summary.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let names: Vec<String> = snapshot_files(&dir).unwrap().into_iter().map(|f| f.0).collect();
    for f in ["policy.safetensors", "adam_m1.safetensors", "adam_m2.safetensors", "adam.json", "state.json", "run.json"]
    {
        assert!(names.iter().any(|n| n == f), "checkpoint {f} missing: {names:?}");
    }
    let events = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("events.out.tfevents"));
    assert_eq!(events.count(), 1);

    // --eval reads the checkpoint and writes nothing into the run directory.
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = listing(&dir);
    let eval = RunArgs { seed: 11, eval: Some(dir.clone()), ..RunArgs::default() };
    let Outcome::Evaluated(report) = run_in(ppo(512), eval).unwrap() else { panic!("not an evaluation") };
    assert_eq!((report.env_steps, report.eval_episodes, report.seed), (512, 3, 11));
    assert_eq!(listing(&dir), before);
    let trainer = Trainer::discrete::<4, 2>(ppo(512), glimpse_envs::cartpole_v1).unwrap();
    let again = trainer.evaluate(&dir, 3, 11).unwrap();
    assert_eq!((again.mean(), again.returns.len()), (report.eval_mean_return, 3));

    // A finished run is not resumed, even with a larger budget; a new run into it is refused.
    let more = dir.with_extension("more.json");
    std::fs::write(&more, r#"{"total_timesteps": 1024}"#).unwrap();
    let err = run_in(ppo(512), resume(&dir, Some(more.clone()))).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Finished { .. })), "{err}");
    let err = run_in(ppo(512), new_run(&dir, 4, None)).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::HasCheckpoint { .. })), "{err}");
    // A directory that is not a run.
    let not_a_run = RunArgs { eval: Some(dir.join("checkpoint")), ..RunArgs::default() };
    assert!(matches!(run_in(ppo(512), not_a_run), Err(Error::Run(RunError::NotARun { .. }))));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&more).unwrap();
}

/// Trains `cfg` in one go, and stopped at 700 steps then resumed by a trainer with `other`
/// settings: the summaries and final snapshots are the same.
fn whole_and_resumed<C: Algorithm + Clone>(name: &str, cfg: C, other: C) {
    let base = temp(name);
    let (whole, split) = (base.join("whole"), base.join("split"));
    let Outcome::Finished(mut expected) = run_in(cfg.clone(), new_run(&whole, 6, None)).unwrap() else {
        panic!("{name}: not finished")
    };
    let Outcome::Stopped { done } = run_in(cfg.clone(), new_run(&split, 6, Some(700))).unwrap() else {
        panic!("{name}: not stopped")
    };
    assert!((700..1000).contains(&done), "{name}: stopped at {done}");
    assert!(!split.join("summary.json").exists());
    let lengths = &state(&split)["envs"]["Ok"]["lengths"];
    assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "mid-episode: {lengths}");

    // A rejected config on --resume changes nothing and leaves the run resumable.
    let config_before = std::fs::read(split.join("config.json")).unwrap();
    let bad = base.join("bad.json");
    std::fs::write(&bad, r#"{"learning_rate": -1.0}"#).unwrap();
    let err = run_in(cfg.clone(), resume(&split, Some(bad))).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Config { .. })) && err.to_string().contains("learning_rate"), "{err}");
    assert_eq!(std::fs::read(split.join("config.json")).unwrap(), config_before);

    // Another process: its trainer has other settings and another seed; the saved ones count.
    let trainer = Trainer::discrete::<4, 2>(other, glimpse_envs::cartpole_v1).unwrap().seed(77);
    let mut got = trainer.resume(&split).unwrap();
    got.wall_seconds = 0.0;
    expected.wall_seconds = 0.0;
    assert_eq!(got, expected, "{name}: summary");
    assert_eq!(
        snapshot_files(&split).unwrap(),
        snapshot_files(&whole).unwrap(),
        "{name}: weights, optimizer, envs, learning curve"
    );
    assert!(state(&whole)["progress"]["curve"].as_array().unwrap().len() > 5);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_stopped_and_resumed_ppo_run_equals_the_uninterrupted_one() {
    whole_and_resumed("exact-ppo", ppo(2048), PpoConfig { learning_rate: 0.1, ..ppo(4096) });
}

#[test]
fn a_stopped_and_resumed_a2c_run_equals_the_uninterrupted_one() {
    whole_and_resumed("exact-a2c", a2c(), A2cConfig { num_envs: 3, ..a2c() });
}
