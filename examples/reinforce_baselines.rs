//! The variance-reduction story of REINFORCE on CartPole-v1: trains with each baseline (none, a
//! running mean of returns, a learned value network) over seeds 1..=N for a fixed budget, then
//! writes into the run directory `learning_curves.png` (mean ± std of the training return),
//! `grad_variance.png` (log10 of each run's estimated policy-gradient variance),
//! `same_batch_variance.png` (log10 of each baseline's variance relative to no baseline, measured
//! on the same batches, pooled over all runs), `curves.csv`, `grad_variance.json` and
//! `summary.json`. Each run is a run of its own (TensorBoard events, checkpoints, summary) in a
//! sub-directory `<baseline>-seed<N>`.
//!
//! `cargo run --release --example reinforce_baselines -- [--seeds 5] [--total-timesteps 150000] [--run-dir DIR]`
//! Every REINFORCE setting is a flag (`--help`); `--baseline` is not used (every baseline is
//! trained), nor `--seed` (the runs take seeds 1..=N). The sub-runs are not resumed as a whole:
//! `cartpole_reinforce --resume DIR/<baseline>-seed<N>` continues one of them.

use clap::{CommandFactory, FromArgMatches, Parser};
use glimpse::plot::{aggregate, plot_series, Labels, Series};
use glimpse::run::{resolve_config, with_defaults, RunDir};
use glimpse_reinforce::prelude::*;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Seeds 1..=N for each baseline.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    #[command(flatten)]
    config: ReinforceConfig,
}

fn main() {
    exit_on_error(run());
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // 150k steps per run, the variance of every baseline measured every second update, one
    // evaluation at the end.
    let defaults = ReinforceConfig {
        total_timesteps: 150_000,
        grad_variance_frequency: 4096,
        eval_frequency: 0,
        ..ReinforceConfig::default()
    };
    let matches = with_defaults(Args::command().bin_name("reinforce_baselines"), &defaults).get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if args.run.resume.is_some() || args.run.eval.is_some() || args.run.stop_after.is_some() {
        return Err("reinforce_baselines runs seeds 1..=N afresh: use --resume/--eval/--stop-after on one of its \
                    sub-runs with cartpole_reinforce instead"
            .into());
    }
    let cfg = resolve_config(&defaults, &args.config, args.run.config.as_deref(), &matches)?;
    RunConfig::validate(&cfg).map_err(|m| format!("invalid configuration: {m}"))?;
    if args.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if cfg.grad_variance_frequency == 0 {
        return Err("grad_variance_frequency must be positive here: the gradient variance is what is compared".into());
    }
    let mut run = RunDir::create("reinforce_baselines", args.run.run_dir.clone())?;
    run.lock()?;
    run.write_config(&cfg)?;
    let total_timesteps = cfg.total_timesteps;
    let variants =
        [(Baseline::None, (214, 39, 40)), (Baseline::RunningMean, (31, 119, 180)), (Baseline::Value, (44, 160, 44))];
    let grid: Vec<f64> = (1..=60).map(|k| total_timesteps as f64 * k as f64 / 60.0).collect();
    let (mut curves, mut variances) = (Vec::new(), Vec::new());
    // Per run, log10(var_b / var_none) on the same batches, for b = running mean and value.
    let (mut ratio_mean, mut ratio_value) = (Vec::new(), Vec::new());
    let mut report = serde_json::Map::new();
    let mut csv = String::from("baseline,env_steps,mean_return,std_return\n");
    for (baseline, color) in variants {
        let (mut runs, mut vars, mut evals, mut mean_vars) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seed in 1..=args.seeds {
            let sub = run.path().join(format!("{}-seed{seed}", baseline.name()));
            let trainer =
                Trainer::<_, 4, 2>::new(ReinforceConfig { baseline, ..cfg.clone() }, glimpse_envs::cartpole_v1)?
                    .seed(seed)
                    .run_dir(&sub);
            let summary = trainer.train()?;
            let progress = trainer.load_progress(&sub)?;
            evals.push(summary.eval_mean_return.unwrap_or(f64::NAN));
            let logs: Vec<(u64, f64)> =
                progress.grad_variances.iter().map(|&(s, v)| (s, v.max(1e-30).log10())).collect();
            mean_vars.push(logs.iter().map(|p| p.1).sum::<f64>() / logs.len().max(1) as f64);
            vars.push(logs);
            let ratio = |k: usize| -> Vec<(u64, f64)> {
                progress.same_batch_grad_variances.iter().map(|&(s, v)| (s, (v[k] / v[0]).log10())).collect()
            };
            ratio_mean.push(ratio(1));
            ratio_value.push(ratio(2));
            runs.push(progress.curve);
        }
        let (m, lo, hi) = aggregate(&runs, &grid);
        for (i, x) in grid.iter().enumerate() {
            csv += &format!("{},{x},{},{}\n", baseline.name(), m[i], (hi[i] - m[i]));
        }
        curves.push(Series { label: baseline.name().into(), color, x: grid.clone(), y: m, lo, hi });
        let (vm, vlo, vhi) = aggregate(&vars, &grid);
        variances.push(Series { label: baseline.name().into(), color, x: grid.clone(), y: vm, lo: vlo, hi: vhi });
        let mean_log_var = mean_vars.iter().sum::<f64>() / mean_vars.len() as f64;
        report.insert(
            baseline.name().into(),
            serde_json::json!({
                "mean_log10_grad_variance": mean_log_var,
                "per_seed_mean_log10_grad_variance": mean_vars,
                "final_eval_mean_return_per_seed": evals,
            }),
        );
        println!("{:>12}: mean log10 grad variance {mean_log_var:.2}, final greedy returns {evals:?}", baseline.name());
    }
    let pooled = |r: &[Vec<(u64, f64)>]| {
        let all: Vec<f64> = r.iter().flatten().map(|p| p.1).filter(|v| v.is_finite()).collect();
        all.iter().sum::<f64>() / all.len().max(1) as f64
    };
    report.insert(
        "same_batch_mean_log10_variance_ratio_vs_none".into(),
        serde_json::json!({ "running-mean": pooled(&ratio_mean), "value": pooled(&ratio_value) }),
    );
    println!(
        "same batches: mean log10(var / var_none): running-mean {:.2}, value {:.2}",
        pooled(&ratio_mean),
        pooled(&ratio_value)
    );
    let mut ratios = Vec::new();
    for (label, color, r) in
        [("running-mean / none", (31, 119, 180), &ratio_mean), ("value / none", (44, 160, 44), &ratio_value)]
    {
        let (m, lo, hi) = aggregate(r, &grid);
        ratios.push(Series { label: label.into(), color, x: grid.clone(), y: m, lo, hi });
    }
    let zero = vec![0.0; grid.len()];
    ratios.push(Series {
        label: "none".into(),
        color: (214, 39, 40),
        x: grid.clone(),
        y: zero.clone(),
        lo: zero.clone(),
        hi: zero,
    });
    std::fs::write(run.path().join("curves.csv"), csv)?;
    glimpse::checkpoint::save_json(&report, &run.path().join("grad_variance.json"))?;
    let title = format!("REINFORCE on CartPole-v1, {} seeds (mean +- std)", args.seeds);
    let labels = Labels { title, x: "environment steps".into(), y: "training episode return".into() };
    plot_series(&run.path().join("learning_curves.png"), &curves, &labels, (900, 560))?;
    let labels = Labels {
        title: "Policy-gradient variance (across 8 env groups)".into(),
        x: "environment steps".into(),
        y: "log10 variance".into(),
    };
    plot_series(&run.path().join("grad_variance.png"), &variances, &labels, (900, 560))?;
    let labels = Labels {
        title: "Gradient variance relative to no baseline, same batches".into(),
        x: "environment steps".into(),
        y: "log10 variance ratio (mean +- std over all runs)".into(),
    };
    plot_series(&run.path().join("same_batch_variance.png"), &ratios, &labels, (900, 560))?;
    run.write_summary(&serde_json::Value::Object(report))?;
    println!("plots and data in {}", run.path().display());
    Ok(())
}
