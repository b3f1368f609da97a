//! `--resume` is exact: a run stopped half-way with `--stop-after` (mid-episode, with n-step
//! transitions pending) and continued with `--resume` ends with the uninterrupted run's
//! `summary.json` (wall time aside), byte-identical checkpoint files (weights, optimizer,
//! replay, counters) and the same logged scalars. And the run layer's guards, seen from DQN.

use std::path::{Path, PathBuf};

use glimpse::checkpoint::current_snapshot;
use glimpse::run::{snapshot_files, RunLock};
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, Info, Space, Step};
use glimpse_dqn::prelude::*;
use glimpse_envs::cartpole_v1;

fn config() -> Config {
    Config {
        total_timesteps: 1200,
        num_envs: 2,
        learning_starts: 200,
        buffer_size: 5000,
        batch_size: 32,
        exploration_fraction: 0.5,
        train_frequency: 2,
        gradient_steps: 1,
        target_network_frequency: 100,
        n_step: 3,
        eval_frequency: 400,
        eval_episodes: 3,
        checkpoint_frequency: 500,
        ..Config::default()
    }
}

fn temp(name: &str) -> PathBuf {
    glimpse::testing::scratch_dir("dqn-resume", name)
}

/// The cartpole example's command line (hidden width 32) with `cfg` as its defaults.
fn cartpole(cfg: &Config, args: &[&str]) -> Result<Outcome<Summary>, Error> {
    let args: Vec<&str> = ["cartpole_dqn"].into_iter().chain(args.iter().copied()).collect();
    Trainer::<_, 4, 2, 32>::new(cfg.clone(), cartpole_v1)?.run_command_line_from(&args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every scalar in the run's TensorBoard event files as (tag, step, value bits), sorted;
/// `charts/SPS` (wall-clock speed) left out.
fn logged_scalars(dir: &Path) -> Vec<(String, u64, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
            let event = &bytes[pos + 12..pos + 12 + len];
            pos += 16 + len;
            let mut step = 0;
            let mut values = Vec::new();
            for (field, value) in fields(event) {
                match (field, value) {
                    (2, Field::Varint(s)) => step = s,
                    (5, Field::Bytes(summary)) => {
                        for (_, v) in fields(summary) {
                            if let Field::Bytes(v) = v {
                                values.push(v);
                            }
                        }
                    }
                    _ => {}
                }
            }
            for v in values {
                let (mut tag, mut simple) = (String::new(), None);
                for (field, value) in fields(v) {
                    match (field, value) {
                        (1, Field::Bytes(t)) => tag = String::from_utf8(t.to_vec()).unwrap(),
                        (2, Field::Fixed32(x)) => simple = Some(x),
                        _ => {}
                    }
                }
                if let Some(x) = simple {
                    if tag != "charts/SPS" {
                        out.push((tag, step, x));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

/// The top-level fields of a protobuf message.
fn fields(mut msg: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn varint(msg: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = msg[0];
            *msg = &msg[1..];
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !msg.is_empty() {
        let key = varint(&mut msg);
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut msg)),
            1 => {
                msg = &msg[8..];
                Field::Fixed64
            }
            2 => {
                let len = varint(&mut msg) as usize;
                let (b, rest) = msg.split_at(len);
                msg = rest;
                Field::Bytes(b)
            }
            5 => {
                let x = u32::from_le_bytes(msg[..4].try_into().unwrap());
                msg = &msg[4..];
                Field::Fixed32(x)
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, field));
    }
    out
}

fn without_wall_time(mut summary: serde_json::Value) -> serde_json::Value {
    summary.as_object_mut().unwrap().remove("wall_seconds").expect("summary.json has wall_seconds");
    summary
}

/// Runs `cfg` in one go, and stopped at `stop` then resumed (after a rejected `--config`);
/// compares the summaries, the final snapshots and the logged scalars.
fn check_exact_resume(name: &str, cfg: Config, stop: u64) {
    let (whole, split) = (temp(&format!("{name}-whole")), temp(&format!("{name}-split")));
    let Outcome::Finished(expected) = cartpole(&cfg, &["--seed", "9", "--run-dir", s(&whole)]).unwrap() else {
        panic!("the uninterrupted run did not finish")
    };
    let stop_flag = stop.to_string();
    let outcome = cartpole(&cfg, &["--seed", "9", "--run-dir", s(&split), "--stop-after", &stop_flag]).unwrap();
    assert_eq!(outcome, Outcome::Stopped { done: stop.next_multiple_of(2) });

    // The checkpoint was taken after the step that reached `stop`, mid-episode, with n-step
    // transitions pending.
    let snapshot = current_snapshot(&split.join("checkpoint")).unwrap();
    assert_eq!(json(&snapshot.join("run.json"))["done"], stop.next_multiple_of(2));
    let pending = json(&snapshot.join("pending.json"));
    let count: u64 = pending["nstep"]["count"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum();
    assert!(count > 0, "no n-step transition pending at the stop");
    let lengths = &json(&snapshot.join("loop.json"))["envs"]["Ok"]["lengths"];
    assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "an episode just began: {lengths}");

    // A config rejected on --resume changes nothing: the run stays resumable, config.json as it was.
    let config_before = std::fs::read(split.join("config.json")).unwrap();
    let bad = split.with_extension("bad.json");
    std::fs::write(&bad, r#"{ "gamma": 2.0 }"#).unwrap();
    let err = cartpole(&cfg, &["--resume", s(&split), "--config", s(&bad)]).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Config { .. })) && err.to_string().contains("gamma"), "{err}");
    assert_eq!(std::fs::read(split.join("config.json")).unwrap(), config_before);
    std::fs::remove_file(&bad).unwrap();

    let Outcome::Finished(got) = cartpole(&cfg, &["--resume", s(&split)]).unwrap() else {
        panic!("the resumed run did not finish")
    };
    assert_eq!(got.seed, 9, "a resumed run keeps its seed");
    let (a, b) = (json(&whole.join("summary.json")), json(&split.join("summary.json")));
    assert_eq!(without_wall_time(a), without_wall_time(b), "summary.json");
    assert_eq!((got.env_steps, got.updates), (expected.env_steps, expected.updates));
    let (files_a, files_b) = (snapshot_files(&whole).unwrap(), snapshot_files(&split).unwrap());
    let names: Vec<&str> = files_a.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["q.safetensors", "target.safetensors", "adam_m1.safetensors", "replay.bin", "state.json", "loop.json"]
    {
        assert!(names.contains(&name), "{name} is not in the snapshot: {names:?}");
    }
    for ((name, x), (_, y)) in files_a.iter().zip(&files_b) {
        assert!(x == y, "{name} differs between the uninterrupted and the resumed run");
    }
    assert_eq!(files_a.len(), files_b.len());
    let (a, b) = (logged_scalars(&whole), logged_scalars(&split));
    assert!(a.iter().filter(|(t, ..)| t == "charts/episodic_return").count() > 20);
    assert!(a.iter().any(|(t, ..)| t == "losses/td_loss") && a.iter().any(|(t, ..)| t == "eval/mean_return"));
    assert_eq!(a, b, "logged scalars");

    // A finished run is not resumed, even with a larger budget.
    let err = cartpole(&cfg, &["--resume", s(&split), "--total-timesteps", "5000"]).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Finished { .. })), "{err}");
    std::fs::remove_dir_all(&whole).unwrap();
    std::fs::remove_dir_all(&split).unwrap();
}

#[test]
fn resume_is_exact_with_uniform_replay_and_n_step_returns() {
    check_exact_resume("uniform", config(), 613);
}

#[test]
fn resume_is_exact_with_prioritized_replay_and_dueling_heads() {
    let cfg = Config { prioritized: true, n_step: 2, dueling: true, ..config() };
    check_exact_resume("per", cfg, 709);
}

#[test]
fn a_new_run_into_a_checkpointed_dir_and_a_second_writer_are_refused() {
    let dir = temp("guards");
    assert_eq!(
        cartpole(&config(), &["--run-dir", s(&dir), "--stop-after", "300"]).unwrap(),
        Outcome::Stopped { done: 300 }
    );
    let err = cartpole(&config(), &["--run-dir", s(&dir)]).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::HasCheckpoint { .. })), "{err}");
    assert!(err.to_string().contains("--resume"), "{err}");
    // While another process holds the directory's lock, a resume is refused.
    let lock = RunLock::acquire(&dir).unwrap();
    let err = cartpole(&config(), &["--resume", s(&dir)]).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Locked { .. })), "{err}");
    drop(lock);
    // --eval reads the checkpoint and writes nothing into the run directory.
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = listing(&dir);
    let Outcome::Evaluated(eval) = cartpole(&config(), &["--eval", s(&dir), "--eval-episodes", "4"]).unwrap() else {
        panic!("not an evaluation")
    };
    assert_eq!((eval.eval_episodes, eval.env_steps, eval.seed), (4, 300, 1));
    assert!(eval.eval_mean_return >= 5.0, "{eval:?}");
    assert_eq!(listing(&dir), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_a_clear_error() {
    let dir = temp("damaged");
    let cfg = Config { prioritized: true, ..config() };
    assert_eq!(cartpole(&cfg, &["--run-dir", s(&dir), "--stop-after", "300"]).unwrap(), Outcome::Stopped { done: 300 });
    let snapshot = current_snapshot(&dir.join("checkpoint")).unwrap();
    for file in
        ["q.safetensors", "replay.bin", "replay.bin.priorities", "pending.json", "loop.json", "adam_m1.safetensors"]
    {
        let path = snapshot.join(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = cartpole(&cfg, &["--resume", s(&dir)]).unwrap_err().to_string();
        assert!(err.contains(file) && err.contains("truncated"), "{file}: {err}");
        std::fs::write(&path, &bytes).unwrap();
    }
    // LATEST pointing nowhere is an error too, never a silent fresh start.
    std::fs::write(dir.join("checkpoint").join("LATEST"), "snap-gone").unwrap();
    let err = cartpole(&cfg, &["--resume", s(&dir)]).unwrap_err().to_string();
    assert!(err.contains("snap-gone"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An env that cannot save its state (like a Python gymnasium env).
struct Opaque(u32);

impl Env for Opaque {
    type Obs = [f32; 4];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0; 4], vec![10.0; 4]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(2).into()
    }
    fn reset(&mut self, _: Option<u64>) -> Result<([f32; 4], Info), EnvError> {
        self.0 = 0;
        Ok(([0.0; 4], Info::default()))
    }
    fn step(&mut self, _: &usize) -> Result<Step<[f32; 4]>, EnvError> {
        self.0 += 1;
        Ok(Step { obs: [self.0 as f32; 4], reward: 1.0, terminated: false, truncated: false, info: Info::default() })
    }
}

#[test]
fn resuming_on_an_env_without_saved_state_fails_clearly_but_it_evaluates() {
    let dir = temp("opaque");
    let make = || TimeLimit::new(Opaque(0), 10);
    let opaque = |args: &[&str]| {
        let args: Vec<&str> = ["opaque"].into_iter().chain(args.iter().copied()).collect();
        Trainer::<_, 4, 2, 32>::new(config(), make)?.run_command_line_from(&args)
    };
    assert_eq!(opaque(&["--run-dir", s(&dir), "--stop-after", "300"]).unwrap(), Outcome::Stopped { done: 300 });
    let err = opaque(&["--resume", s(&dir)]).unwrap_err();
    assert!(matches!(err, Error::Resume(_)), "{err}");
    assert!(err.to_string().contains("Opaque cannot save its state"), "{err}");
    let Outcome::Evaluated(eval) = opaque(&["--eval", s(&dir)]).unwrap() else { panic!("not an evaluation") };
    assert_eq!(eval.eval_mean_return, 10.0, "every episode lasts 10 steps of reward 1");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_a_solved_run_is_refused() {
    // A threshold every evaluation reaches: the run is solved at its first evaluation (step 400).
    let cfg = Config { solve_threshold: Some(0.0), ..config() };
    let dir = temp("solved");
    let Outcome::Finished(summary) = cartpole(&cfg, &["--run-dir", s(&dir)]).unwrap() else { panic!("not finished") };
    assert_eq!((summary.solved_at_step, summary.env_steps, summary.solved), (Some(400), 400, true));
    let err = cartpole(&cfg, &["--resume", s(&dir)]).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::Finished { done: 400, .. })), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
