//! REINFORCE on the run layer: a run stopped mid-episode and resumed by another trainer ends
//! exactly like the same run done in one go (summary, both networks, both optimizers, running
//! mean, curves); the guards; and bad input stops with an error.

use std::path::{Path, PathBuf};

use glimpse::run::snapshot_files;
use glimpse::validate::SpaceMismatch;
use glimpse_reinforce::prelude::*;

fn config(baseline: Baseline) -> ReinforceConfig {
    ReinforceConfig {
        num_envs: 4,
        num_steps: 64,
        total_timesteps: 4096,
        eval_frequency: 1024,
        eval_episodes: 3,
        baseline,
        grad_variance_frequency: 768,
        checkpoint_frequency: 0,
        ..ReinforceConfig::default()
    }
}

fn temp(name: &str) -> PathBuf {
    glimpse::testing::scratch_dir("reinforce", name)
}

fn trainer(cfg: ReinforceConfig) -> Trainer<glimpse::wrappers::TimeLimit<glimpse_envs::CartPole>, 4, 2> {
    Trainer::new(cfg, glimpse_envs::cartpole_v1).unwrap()
}

#[test]
fn a_stopped_and_resumed_run_equals_the_uninterrupted_one() {
    for baseline in [Baseline::Value, Baseline::RunningMean] {
        let base = temp(&format!("exact-{}", baseline.name()));
        let (whole, split) = (base.join("whole"), base.join("split"));
        let args =
            |dir: &Path, stop_after| RunArgs { seed: 8, run_dir: Some(dir.into()), stop_after, ..RunArgs::default() };
        let Outcome::Finished(mut expected) = trainer(config(baseline)).run(&args(&whole, None)).unwrap() else {
            panic!("not finished")
        };
        let expected_progress = trainer(config(baseline)).load_progress(&whole).unwrap();
        let stopped = trainer(config(baseline)).run(&args(&split, Some(1500))).unwrap();
        assert_eq!(stopped, Outcome::Stopped { done: 1536 });
        let snap = glimpse::checkpoint::current_snapshot(&split.join("checkpoint")).unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(snap.join("state.json")).unwrap()).unwrap();
        let lengths = &state["envs"]["Ok"]["lengths"];
        assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "mid-episode: {lengths}");

        // A rejected config on --resume changes nothing and leaves the run resumable.
        let bad = base.join("bad.toml");
        std::fs::write(&bad, "gamma = 2.0\n").unwrap();
        let before = std::fs::read(split.join("config.json")).unwrap();
        let resume_bad = RunArgs { resume: Some(split.clone()), config: Some(bad), ..RunArgs::default() };
        let err = trainer(config(baseline)).run(&resume_bad).unwrap_err();
        assert!(matches!(err, Error::Run(RunError::Config { .. })) && err.to_string().contains("gamma"), "{err}");
        assert_eq!(std::fs::read(split.join("config.json")).unwrap(), before);
        // A new run into a directory holding a checkpoint is refused.
        let err = trainer(config(baseline)).run(&args(&split, None)).unwrap_err();
        assert!(matches!(err, Error::Run(RunError::HasCheckpoint { .. })), "{err}");

        // Another process, with another baseline and seed in its trainer: the saved ones count.
        let other = trainer(ReinforceConfig { baseline: Baseline::None, ..config(baseline) }).seed(99);
        let resume = RunArgs { resume: Some(split.clone()), ..RunArgs::default() };
        let Outcome::Finished(mut got) = other.run(&resume).unwrap() else { panic!("not finished") };
        let got_progress = other.load_progress(&split).unwrap();
        got.wall_seconds = 0.0;
        expected.wall_seconds = 0.0;
        assert_eq!(got, expected);
        assert_eq!(got_progress, expected_progress);
        assert!(expected_progress.curve.len() > 10 && !expected_progress.grad_variances.is_empty());
        assert_eq!(snapshot_files(&split).unwrap(), snapshot_files(&whole).unwrap());
        // A finished run is not resumed.
        assert!(matches!(other.run(&resume), Err(Error::Run(RunError::Finished { .. }))));
        std::fs::remove_dir_all(&base).unwrap();
    }
}

/// One-step episodes with 3 actions whose env 1 reaches a NaN observation on its 5th step.
struct ThreeActions(u64, u64);
impl Env for ThreeActions {
    type Obs = [f32; 1];
    type Act = usize;
    fn observation_space(&self) -> Space {
        BoxSpace::new(vec![0.0], vec![1.0]).into()
    }
    fn action_space(&self) -> Space {
        Discrete::new(3).into()
    }
    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; 1], Info), EnvError> {
        if let Some(s) = seed {
            self.0 = s;
        }
        Ok(([0.5], Info::default()))
    }
    fn step(&mut self, _: &usize) -> Result<Step<[f32; 1]>, EnvError> {
        self.1 += 1;
        let obs = if self.0 == 1 && self.1 == 5 { [f32::NAN] } else { [0.5] };
        Ok(Step { obs, reward: 1.0, terminated: true, truncated: false, info: Info::default() })
    }
}

#[test]
fn a_wrong_action_count_is_refused_at_construction_and_a_nan_observation_stops_training() {
    let cfg = ReinforceConfig {
        num_envs: 2,
        num_steps: 4,
        total_timesteps: 64,
        eval_frequency: 0,
        ..config(Baseline::Value)
    };
    let err = Trainer::<_, 1, 2>::new(cfg.clone(), || ThreeActions(0, 0)).err().expect("refused");
    assert!(matches!(err, Error::Spaces(SpaceMismatch::DiscreteActions { expected: 2, .. })), "{err}");
    assert!(
        err.to_string().contains("one of 2 actions (Discrete(2)), but the env's action space is Discrete(3)"),
        "{err}"
    );

    let dir = temp("nan");
    let trainer = Trainer::<_, 1, 3>::new(cfg, || ThreeActions(0, 0)).unwrap().seed(0).run_dir(&dir);
    let Err(Error::NonFinite(e)) = trainer.train() else { panic!("expected a non-finite observation error") };
    assert_eq!((e.what.as_str(), e.step), ("observation of env 1", 10), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
