//! `--resume` is exact: a run stopped half-way (mid-episode, with n-step transitions pending) and
//! continued by a fresh agent ends with bit-for-bit the weights, optimizer state, counters, logged
//! scalars and summary of the same run done in one go.

use std::path::Path;

use dfdx::prelude::*;
use glimpse::checkpoint::current_snapshot;
use glimpse::run::RunDir;
use glimpse::wrappers::TimeLimit;
use glimpse::{BoxSpace, Discrete, Env, EnvError, Info, Space, Step};
use glimpse_dqn::{train, train_until, Config, Dqn, DqnError, QNetwork, Summary};
use glimpse_envs::cartpole_v1;

type Net = <QNetwork<4, 2, 32> as BuildOnDevice<Cpu, f32>>::Built;
type Agent = Dqn<Net, 4, 2>;

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

fn temp_run(name: &str) -> RunDir {
    let dir = std::env::temp_dir().join(format!("glimpse-dqn-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    RunDir::create("test", Some(dir)).unwrap()
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

/// Every tensor of the online and target networks and of Adam's moments, plus Adam's step count.
fn everything(agent: &Agent) -> (Vec<Vec<f32>>, u64) {
    let layers = |m: &Net| {
        vec![
            m.0.weight.as_vec(),
            m.0.bias.as_vec(),
            m.2.weight.as_vec(),
            m.2.bias.as_vec(),
            m.4.weight.as_vec(),
            m.4.bias.as_vec(),
        ]
    };
    let (m1, m2) = agent.opt.moments();
    let tensors = [layers(&agent.q), layers(&agent.target), layers(m1), layers(m2)].concat();
    (tensors, agent.opt.t)
}

fn without_wall_time(s: &Summary) -> Summary {
    Summary { wall_seconds: 0.0, ..s.clone() }
}

/// Runs `cfg` in one go and stopped at `stop` then resumed by a fresh agent; compares everything.
fn check_exact_resume(name: &str, cfg: Config, stop: u64) {
    let mut whole_run = temp_run(&format!("{name}-whole"));
    let mut whole = Agent::new(cfg.clone(), 9).unwrap();
    let expected = train(&mut whole, &cartpole_v1, &mut whole_run, false).unwrap();

    let mut first_run = temp_run(&format!("{name}-split"));
    let mut first = Agent::new(cfg.clone(), 9).unwrap();
    assert!(train_until(&mut first, &cartpole_v1, &mut first_run, false, Some(stop)).unwrap().is_none());
    assert_eq!(first.state.global_step, stop.next_multiple_of(2), "stops after the step that reaches `stop`");

    // The checkpoint was taken mid-episode with n-step transitions pending.
    let snapshot = current_snapshot(&first_run.checkpoint_dir()).unwrap();
    let pending: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snapshot.join("pending.json")).unwrap()).unwrap();
    let count: u64 = pending["nstep"]["count"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum();
    assert!(count > 0, "no n-step transition pending at the stop");
    let lengths = &pending["train_loop"]["envs"]["Ok"]["lengths"];
    assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "an episode just began: {lengths}");
    drop(first);

    // A new process: reopen the run, build an agent with another seed, load, continue.
    let path = first_run.path().to_path_buf();
    drop(first_run);
    let mut reopened = RunDir::open(&path).unwrap();
    let mut resumed = Agent::new(cfg, 1234).unwrap();
    resumed.load(&reopened.checkpoint_dir()).unwrap();
    let got = train(&mut resumed, &cartpole_v1, &mut reopened, false).unwrap();

    assert_eq!(without_wall_time(&got), without_wall_time(&expected));
    assert_eq!(resumed.state, whole.state, "counters and random stream");
    assert_eq!(everything(&resumed), everything(&whole), "weights and optimizer state");
    let (a, b) = (logged_scalars(whole_run.path()), logged_scalars(&path));
    assert!(a.iter().filter(|(t, ..)| t == "charts/episodic_return").count() > 20);
    assert!(a.iter().any(|(t, ..)| t == "losses/td_loss") && a.iter().any(|(t, ..)| t == "eval/mean_return"));
    assert_eq!(a, b, "logged scalars");
    std::fs::remove_dir_all(whole_run.path()).unwrap();
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn resume_is_exact_with_uniform_replay_and_n_step_returns() {
    check_exact_resume("uniform", config(), 613);
}

#[test]
fn resume_is_exact_with_prioritized_replay() {
    let cfg = Config { prioritized: true, n_step: 2, dueling: false, ..config() };
    check_exact_resume("per", cfg, 707);
}

#[test]
fn a_damaged_checkpoint_is_a_clear_error() {
    let mut run = temp_run("damaged");
    let mut agent = Agent::new(Config { prioritized: true, ..config() }, 2).unwrap();
    train_until(&mut agent, &cartpole_v1, &mut run, false, Some(300)).unwrap();
    let snapshot = current_snapshot(&run.checkpoint_dir()).unwrap();
    for file in
        ["q.safetensors", "replay.bin", "replay.bin.priorities", "pending.json", "state.json", "adam_m1.safetensors"]
    {
        let path = snapshot.join(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let mut fresh = Agent::new(Config { prioritized: true, ..config() }, 2).unwrap();
        let err = fresh.load(&run.checkpoint_dir()).unwrap_err().to_string();
        assert!(err.contains(file) && err.contains("truncated"), "{file}: {err}");
        std::fs::write(&path, &bytes).unwrap();
    }
    // A missing manifest or LATEST pointing nowhere is an error too, never a silent fresh start.
    std::fs::write(run.checkpoint_dir().join("LATEST"), "snap-gone").unwrap();
    let err = Agent::new(config(), 2).unwrap().load(&run.checkpoint_dir()).unwrap_err().to_string();
    assert!(err.contains("snap-gone"), "{err}");
    std::fs::remove_dir_all(run.path()).unwrap();
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
fn resuming_on_an_env_without_saved_state_fails_clearly() {
    let make = || TimeLimit::new(Opaque(0), 10);
    let mut run = temp_run("opaque");
    let mut agent = Agent::new(config(), 4).unwrap();
    assert!(train_until(&mut agent, &make, &mut run, false, Some(300)).unwrap().is_none());
    let mut resumed = Agent::new(config(), 4).unwrap();
    resumed.load(&run.checkpoint_dir()).unwrap();
    let err = train(&mut resumed, &make, &mut run, false).unwrap_err();
    assert!(matches!(err, DqnError::Resume(_)), "{err}");
    assert!(err.to_string().contains("Opaque cannot save its state"), "{err}");
    // An agent that stepped outside `train` cannot be continued by it either.
    let mut stepped = Agent::new(config(), 4).unwrap();
    stepped.state.global_step = 10;
    let err = train(&mut stepped, &cartpole_v1, &mut run, false).unwrap_err();
    assert!(matches!(err, DqnError::Resume(_)), "{err}");
    std::fs::remove_dir_all(run.path()).unwrap();
}

#[test]
fn resuming_a_solved_run_is_refused() {
    // A threshold every evaluation reaches: the run is solved at its first evaluation (step 400).
    let cfg = Config { solve_threshold: Some(0.0), ..config() };
    let mut run = temp_run("solved");
    let mut agent = Agent::new(cfg.clone(), 3).unwrap();
    let summary = train(&mut agent, &cartpole_v1, &mut run, false).unwrap();
    assert_eq!(summary.solved_at_step, Some(400));
    let mut resumed = Agent::new(cfg, 3).unwrap();
    resumed.load(&run.checkpoint_dir()).unwrap();
    let err = train(&mut resumed, &cartpole_v1, &mut run, false).unwrap_err();
    assert!(matches!(err, DqnError::Resume(_)) && err.to_string().contains("solved at env step 400"), "{err}");
    std::fs::remove_dir_all(run.path()).unwrap();
}
