//! DQN throughput on CartPole: `cargo run --release --example dqn_bench`.
//!
//! Prints env steps/s during training (acting + storing + learning with the default config),
//! gradient updates/s, replay push/sample rates, and the memory a 1M-transition CartPole buffer
//! takes. Each figure is the median of 3 repeats; run on a quiet machine for numbers to compare.

use std::time::Instant;

use glimpse::replay::{Batch, ReplayBuffer};
use glimpse::run::Train;
use glimpse_dqn::{Config, Dqn, MlpQ, Trainer};
use glimpse_envs::cartpole_v1;
use rand::SeedableRng;

type Net = MlpQ<4, 2, 64>;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
    let tmp = std::env::temp_dir().join(format!("glimpse-dqn-bench-{}", std::process::id()));

    // 1. Whole training loop: 20k env steps, default config, no evaluation.
    let (mut sps, mut ups) = (vec![], vec![]);
    for rep in 0..3 {
        let cfg = Config {
            total_timesteps: 20_000,
            eval_frequency: 0,
            eval_episodes: 0,
            checkpoint_frequency: 0,
            ..Config::default()
        };
        let trainer = Trainer::<_, 4, 2>::new(cfg, cartpole_v1).expect("CartPole fits the network");
        let t = Instant::now();
        let s = trainer.seed(rep).run_dir(tmp.join(format!("train-{rep}"))).train().expect("training");
        let secs = t.elapsed().as_secs_f64();
        sps.push(s.env_steps as f64 / secs);
        ups.push(s.updates as f64 / secs);
    }
    println!(
        "training loop (default config, 20k steps): {:.0} env steps/s, {:.0} gradient updates/s",
        median(sps),
        median(ups)
    );

    // 2. Gradient updates alone (batch 64, 4-64-64-2, Double DQN, Huber).
    let mut rates = vec![];
    for rep in 0..3 {
        let mut agent = Dqn::<Net, 4, 2>::new(Config::default(), rep).expect("default config");
        for t in 0..10_000 {
            let x = (t % 100) as f32 / 100.0;
            agent.observe(0, &[x, -x, x, 0.0], t % 2, 1.0, &[x, x, -x, 0.1], t % 100 == 99, false);
        }
        let t = Instant::now();
        for _ in 0..2000 {
            agent.train_step(0.4).expect("finite training data");
        }
        rates.push(2000.0 / t.elapsed().as_secs_f64());
    }
    println!("gradient updates alone (batch 64): {:.0} updates/s", median(rates));

    // 3. Replay buffer: memory of 1M CartPole transitions, push and sample rates.
    let mut buf = ReplayBuffer::new(1_000_000, 4, 1);
    println!("1M-transition CartPole replay buffer: {:.1} MiB", buf.memory_bytes() as f64 / (1024.0 * 1024.0));
    let t = Instant::now();
    for i in 0..1_000_000 {
        let x = i as f32;
        buf.push(&[x, x, x, x], &[1.0], 1.0, &[x, x, x, x], false, 0.99);
    }
    println!("replay push: {:.1} M transitions/s", 1.0 / t.elapsed().as_secs_f64());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut batch = Batch::default();
    let t = Instant::now();
    for _ in 0..10_000 {
        buf.sample(64, &mut rng, &mut batch);
    }
    println!("replay sample (batch 64 from 1M): {:.0} batches/s", 10_000.0 / t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&tmp);
}
