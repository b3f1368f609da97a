//! Speed of the autoregressive models: milliseconds per training step (batch 32, forward,
//! backward and Adam; the median of 20 after 3 untimed) for each model, and seconds to draw
//! digits with the fast and the naive sampler (the same images; the naive one on fewer digits,
//! scaled: its cost is 784 full passes per digit batch). Speed does not depend on the weights, so
//! the models are freshly initialised.
//!
//! ```sh
//! cargo run --release --example pixelcnn_bench                      # 2 threads, 100 digits fast, 10 naive
//! cargo run --release --example pixelcnn_bench -- 1 100 5           # threads, fast digits, naive digits
//! python benches/pixelcnn_torch.py --steps 100 --sample-digits 10   # PyTorch's figures for the PixelCNN
//! ```

use dfdx::prelude::*;
use glimpse_pixelcnn::figures::chunk_for;
use glimpse_pixelcnn::sample::{sample, Method};
use glimpse_pixelcnn::train::Trainer;
use glimpse_pixelcnn::{GatedPixelCnn, PixelCnn, PixelModel, Planes, RowLstm};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench<M: PixelModel>(fast_digits: usize, naive_digits: usize) {
    let dev = Cpu::seed_from_u64(0);
    let mut trainer = Trainer::<M>::new(1e-3, &dev);
    let b = 32;
    let pixels: Vec<f32> = (0..b * 784).map(|i| f32::from((i * 7919) % 13 < 3)).collect();
    let x: Planes = dev.tensor_from_vec(pixels, (b, Const::<1>, 28, 28));
    let mut times = Vec::new();
    for i in 0..23 {
        let clock = Instant::now();
        trainer.step(x.clone()).expect("finite gradients");
        if i >= 3 {
            times.push(clock.elapsed().as_secs_f64());
        }
    }
    let step = median(times);
    let positions = trainer.model.positions((28, 28));
    let time = |method, n: usize| {
        let clock = Instant::now();
        let images = sample(&positions, method, n, 1, chunk_for(n));
        (clock.elapsed().as_secs_f64(), images)
    };
    let (fast, _) = time(Method::Fast, fast_digits);
    let fast_100 = fast * 100.0 / fast_digits as f64;
    let mut line = format!(
        "{:<9} train step {:7.1} ms ({:.0} s per epoch of 60000) | fast sampler {:7.2} s per 100 digits",
        M::NAME,
        step * 1e3,
        step * 60000.0 / b as f64,
        fast_100
    );
    if naive_digits > 0 {
        let (naive, images) = time(Method::Naive, naive_digits);
        let (check, fast_images) = time(Method::Fast, naive_digits);
        assert_eq!(images, fast_images, "the samplers drew different images");
        let naive_100 = naive * 100.0 / naive_digits as f64;
        line += &format!(
            " | naive {:8.1} s per 100 ({naive_digits} drawn) | fast/naive on those {:.1}x, per 100 {:.0}x",
            naive_100,
            naive / check,
            naive_100 / fast_100
        );
    }
    println!("{line}");
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numbers: threads fast naive")).collect();
    let (threads, fast, naive) =
        (args.first().copied().unwrap_or(2), args.get(1).copied().unwrap_or(100), args.get(2).copied().unwrap_or(10));
    println!("CPU: {} ({threads} threads)", glimpse::nn::cpu_model());
    glimpse::nn::in_thread_pool(Some(threads), || {
        bench::<PixelCnn>(fast, naive);
        bench::<GatedPixelCnn>(fast, naive);
        bench::<RowLstm>(fast, naive);
    })
    .expect("a thread pool");
}
