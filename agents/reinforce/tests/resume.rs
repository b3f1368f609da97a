//! A REINFORCE run stopped mid-episode and resumed in a fresh agent ends exactly like the same run
//! done in one go: summary, both networks, both optimizers, running mean and learning curves.

use glimpse::checkpoint::current_snapshot;
use glimpse::run::RunArgs;
use glimpse_reinforce::cli::{run_example, run_example_until};
use glimpse_reinforce::{Baseline, ReinforceConfig};

fn config(baseline: Baseline) -> ReinforceConfig {
    ReinforceConfig {
        num_envs: 4,
        num_steps: 64,
        total_timesteps: 4096,
        eval_every: 4,
        eval_episodes: 3,
        baseline,
        grad_variance_every: 3,
        ..ReinforceConfig::default()
    }
}

/// The final checkpoint's files and its state without the wall time.
fn final_checkpoint(dir: &std::path::Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    let snap = current_snapshot(&dir.join("checkpoint")).unwrap();
    let files = ["policy.safetensors", "value.safetensors", "policy_adam_m2.safetensors", "value_adam_m1.safetensors"];
    let bytes = files.iter().map(|f| std::fs::read(snap.join(f)).unwrap()).collect();
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("state.json")).unwrap()).unwrap();
    state.as_object_mut().unwrap().remove("wall_seconds");
    (bytes, state)
}

#[test]
fn a_stopped_and_resumed_run_equals_the_uninterrupted_one() {
    for baseline in [Baseline::Value, Baseline::RunningMean] {
        let base =
            std::env::temp_dir().join(format!("glimpse-reinforce-exact-{}-{}", baseline.name(), std::process::id()));
        let (whole, split) = (base.join("whole"), base.join("split"));
        let _ = std::fs::remove_dir_all(&base);
        let args = |dir: &std::path::PathBuf| RunArgs { seed: 8, run_dir: Some(dir.clone()), ..RunArgs::default() };
        let (mut expected, expected_outcome) =
            run_example::<_, 4, 2>("test", &args(&whole), config(baseline), glimpse_envs::cartpole_v1).unwrap();

        let (stopped, _) = run_example_until::<_, 4, 2>(
            "test",
            &args(&split),
            config(baseline),
            glimpse_envs::cartpole_v1,
            Some(1500),
        )
        .unwrap();
        assert_eq!(stopped["stopped_at_step"], 1536, "{stopped}");
        let (_, state) = final_checkpoint(&split);
        let lengths = &state["train_loop"]["envs"]["Ok"]["lengths"];
        assert!(lengths.as_array().unwrap().iter().all(|l| l.as_u64().unwrap() > 0), "mid-episode: {lengths}");

        let resume = RunArgs { resume: Some(split.clone()), seed: 99, ..RunArgs::default() };
        let (mut got, got_outcome) =
            run_example::<_, 4, 2>("test", &resume, config(Baseline::None), glimpse_envs::cartpole_v1).unwrap();
        for s in [&mut expected, &mut got] {
            s.as_object_mut().unwrap().remove("wall_seconds");
        }
        assert_eq!(got, expected);
        assert_eq!(got_outcome.curve, expected_outcome.curve);
        assert_eq!(got_outcome.grad_variances, expected_outcome.grad_variances);
        assert!(expected_outcome.curve.len() > 10 && !expected_outcome.grad_variances.is_empty());
        assert_eq!(final_checkpoint(&split), final_checkpoint(&whole));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
