//! Single-env step throughput of each classic-control env (random actions, auto reset):
//! `cargo run --release -p glimpse-envs --example step_speed [-- STEPS]` (default 10 million).

use std::time::Instant;

use glimpse::Env;
use glimpse_envs::np_random::NpRandom;

/// Steps `env` `steps` times cycling through `actions`; returns millions of steps per second.
fn steps_per_sec<E: Env>(mut env: E, actions: &[E::Act], steps: usize) -> f64 {
    env.reset(Some(0)).expect("reset");
    let start = Instant::now();
    let mut total_reward = 0.0;
    for i in 0..steps {
        let step = env.step(&actions[i % actions.len()]).expect("valid action");
        total_reward += step.reward;
        if step.done() {
            env.reset(None).expect("reset");
        }
    }
    std::hint::black_box(total_reward);
    steps as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let steps: usize =
        std::env::args().nth(1).map(|s| s.parse().expect("STEPS must be an integer")).unwrap_or(10_000_000);
    let mut rng = NpRandom::from_seed(1);
    let discrete =
        |n: f64, rng: &mut NpRandom| -> Vec<usize> { (0..1024).map(|_| (rng.random() * n) as usize).collect() };
    let two = discrete(2.0, &mut rng);
    let three = discrete(3.0, &mut rng);
    let torque: Vec<[f32; 1]> = (0..1024).map(|_| [rng.uniform(-2.0, 2.0) as f32]).collect();
    println!("env                        M steps/s");
    println!("CartPole-v1                {:8.1}", steps_per_sec(glimpse_envs::cartpole_v1(), &two, steps));
    println!("Acrobot-v1                 {:8.1}", steps_per_sec(glimpse_envs::acrobot_v1(), &three, steps));
    println!("MountainCar-v0             {:8.1}", steps_per_sec(glimpse_envs::mountain_car_v0(), &three, steps));
    println!(
        "MountainCarContinuous-v0   {:8.1}",
        steps_per_sec(glimpse_envs::mountain_car_continuous_v0(), &torque, steps)
    );
    println!("Pendulum-v1                {:8.1}", steps_per_sec(glimpse_envs::pendulum_v1(), &torque, steps));
}
