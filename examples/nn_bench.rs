//! Forward+backward timings of glimpse's nn layers, side by side with PyTorch on the same machine.
//!
//! `cargo run --release --example nn_bench -- [--threads 2] [--iters 20] [--torch benches/nn_torch.py] [--python python3]`
//!
//! With `--torch`, the PyTorch script runs in the same invocation (same threads) and the table
//! shows both medians and their ratio (glimpse / PyTorch; below 1 means glimpse is faster).
//! Both sides run with the same glibc malloc settings (`glimpse::nn::keep_freed_memory` here,
//! `GLIBC_TUNABLES` for PyTorch), and the glimpse cases run inside a pool of `--threads` threads.
//! Each side differentiates its own framework's sum of the layer's output (`glimpse::nn::sum_all`
//! here, `Tensor.sum` there).

use clap::Parser;
use dfdx::prelude::*;
use glimpse::nn::builders::{BatchNorm2D, Conv2D, ConvTrans2D, Dense, LSTMCell, MaskedConv2D, MaxPool2D};
use glimpse::nn::{sum_all, LstmState, MaskB};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Threads for both sides (rayon here, torch.set_num_threads there).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed iterations per case (after warm-up).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Warm-up iterations per case.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Path of benches/nn_torch.py; when given, PyTorch is timed too.
    #[arg(long)]
    torch: Option<PathBuf>,
    /// Python interpreter with torch installed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// `wall` (elapsed time) or `cpu` (process CPU time, steadier on a loaded machine; use it
    /// with `--threads 1`, as idle worker threads may spin).
    #[arg(long, default_value = "wall")]
    clock: Clock,
    /// Only run the cases whose name contains this text (e.g. `s2` or `LSTM`; all when absent).
    #[arg(long)]
    case: Option<String>,
    /// Rounds of glimpse-then-PyTorch runs: the table shows each side's median over the rounds
    /// and the median (and range) of the rounds' ratios, steadier on a machine shared with others.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

impl Args {
    /// Whether the case `name` was selected by `--case`.
    fn selected(&self, name: &str) -> bool {
        self.case.as_ref().is_none_or(|c| name.contains(c.as_str()))
    }
}

/// What the timings measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Clock {
    Wall,
    Cpu,
}

/// Current time in milliseconds on `clock` (from an arbitrary origin).
fn now_ms(clock: Clock, origin: Instant) -> f64 {
    match clock {
        Clock::Wall => origin.elapsed().as_secs_f64() * 1000.0,
        Clock::Cpu => {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime only writes the timespec we pass.
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
        }
    }
}

/// The kernel paths of the products run by `f`: `avx512`, `gemm`, `avx512+gemm`, or `-` (none).
fn paths_of(f: impl FnOnce()) -> String {
    let before = glimpse::nn::kernel_counts();
    f();
    let after = glimpse::nn::kernel_counts();
    let used: Vec<&str> = before
        .iter()
        .zip(after)
        .filter(|((_, b), (_, a))| a > b)
        .map(|((path, _), _)| match path {
            glimpse::nn::KernelPath::Avx512 => "avx512",
            glimpse::nn::KernelPath::GemmCrate => "gemm",
            glimpse::nn::KernelPath::Avx512Small => "avx512-small",
            glimpse::nn::KernelPath::DirectConv => "direct",
        })
        .collect();
    if used.is_empty() {
        "-".into()
    } else {
        used.join("+")
    }
}

/// Median milliseconds of `f` over `args.iters` runs after `args.warmup` runs, and the kernel
/// paths of its products (from the first run).
fn median_ms(args: &Args, mut f: impl FnMut()) -> (f64, String) {
    let paths = paths_of(&mut f);
    let origin = Instant::now();
    let mut samples: Vec<f64> = (0..args.warmup + args.iters)
        .map(|_| {
            let start = now_ms(args.clock, origin);
            f();
            now_ms(args.clock, origin) - start
        })
        .skip(args.warmup)
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], paths)
}

/// Times `sum_all(forward(x)).backward()` for a channel-preserving image layer on a random `(b, C, h, w)` input.
fn image_case<M, const C: usize>(dev: &Cpu, m: &M, (b, h, w): (usize, usize, usize), args: &Args) -> (f64, String)
where
    M: Module<
        Tensor<(usize, Const<C>, usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>,
        Output = Tensor<(usize, Const<C>, usize, usize), f32, Cpu, OwnedTape<f32, Cpu>>,
    >,
{
    let x: Tensor<(usize, Const<C>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(b, Const, h, w));
    median_ms(args, || {
        let _grads = sum_all(m.forward(x.leaky_trace())).expect("sum").backward();
    })
}

fn main() {
    glimpse::run::exit_on_error(run(Args::parse()));
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    glimpse::nn::keep_freed_memory();
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    // Per round: the glimpse rows, then PyTorch's times of the same cases right after.
    let mut rounds = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        // The pool's threads wait awake between the timed calls, as PyTorch's OpenMP threads do.
        let rows = glimpse::nn::in_thread_pool(Some(args.threads), || {
            glimpse::nn::with_threads_awake(|| glimpse_rows(&args))
        })?;
        let torch = match &args.torch {
            Some(script) => Some(run_torch(&args, script)?),
            None => None,
        };
        rounds.push((rows, torch));
    }
    let cpu = glimpse::nn::cpu_model();
    let avx512 = glimpse::nn::avx512_available();
    println!(
        "CPU: {cpu} (AVX-512F: {}; products column: the kernels each case ran)",
        if avx512 { "yes" } else { "no" }
    );
    println!(
        "forward+backward medians ({:?} clock) over {} iterations, {} threads, {} round(s)",
        args.clock, args.iters, args.threads, args.rounds
    );
    if let Some(t) = &rounds[0].1 {
        println!("PyTorch {} (torch threads {})", t["torch_version"], t["threads"]);
    }
    let range = if args.rounds > 1 { "  ratio range" } else { "" };
    println!("{:<36} {:>12} {:>12} {:>8}  products{range}", "case", "glimpse ms", "torch ms", "ratio");
    for (i, (name, (_, paths))) in rounds[0].0.iter().enumerate() {
        let ours: Vec<f64> = rounds.iter().map(|(rows, _)| rows[i].1 .0).collect();
        let theirs: Vec<f64> = rounds.iter().filter_map(|(_, t)| t.as_ref().and_then(|t| t[*name].as_f64())).collect();
        let ms = median(&ours);
        if theirs.len() == ours.len() {
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
            let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let range = if args.rounds > 1 { format!("  {lo:.2}-{hi:.2}") } else { String::new() };
            let (t, ratio) = (median(&theirs), median(&ratios));
            println!("{name:<36} {ms:>12.3} {t:>12.3} {ratio:>8.2}  {paths}{range}");
        } else {
            println!("{name:<36} {ms:>12.3} {:>12} {:>8}  {paths}", "-", "-");
        }
    }
    Ok(())
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Times every glimpse case (run inside the benchmark's thread pool).
fn glimpse_rows(args: &Args) -> Vec<(&'static str, (f64, String))> {
    let dev = Cpu::seed_from_u64(0);
    let mut rows: Vec<(&str, (f64, String))> = Vec::new();

    let conv1 = dev.build_module::<Conv2D<1, 32, 3, 1, 1>, f32>();
    let x1: Tensor<(usize, Const<1>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, Const, 28, 28));
    if args.selected("conv 1->32 k3 p1, 64x1x28x28") {
        rows.push((
            "conv 1->32 k3 p1, 64x1x28x28",
            median_ms(args, || drop(sum_all(conv1.forward(x1.leaky_trace())).expect("sum").backward())),
        ));
    }

    let conv2 = dev.build_module::<Conv2D<32, 64, 3, 2, 1>, f32>();
    let x2: Tensor<(usize, Const<32>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, Const, 28, 28));
    if args.selected("conv 32->64 k3 s2 p1, 64x32x28x28") {
        rows.push((
            "conv 32->64 k3 s2 p1, 64x32x28x28",
            median_ms(args, || drop(sum_all(conv2.forward(x2.leaky_trace())).expect("sum").backward())),
        ));
    }

    // mnist_cnn's second convolution.
    let cnn_conv2 = dev.build_module::<Conv2D<32, 64, 3, 1, 1>, f32>();
    let x_cnn: Tensor<(usize, Const<32>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, Const, 14, 14));
    if args.selected("conv 32->64 k3 p1, 64x32x14x14") {
        rows.push((
            "conv 32->64 k3 p1, 64x32x14x14",
            median_ms(args, || drop(sum_all(cnn_conv2.forward(x_cnn.leaky_trace())).expect("sum").backward())),
        ));
    }

    let convt = dev.build_module::<ConvTrans2D<64, 32, 4, 2, 1>, f32>();
    let x3: Tensor<(usize, Const<64>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, Const, 7, 7));
    if args.selected("convT 64->32 k4 s2 p1, 64x64x7x7") {
        rows.push((
            "convT 64->32 k4 s2 p1, 64x64x7x7",
            median_ms(args, || drop(sum_all(convt.forward(x3.leaky_trace())).expect("sum").backward())),
        ));
    }

    // The DCGAN's layers (generative/gan), at its batch of 128.
    let d_conv1 = dev.build_module::<Conv2D<1, 64, 4, 2, 1>, f32>();
    let xd1: Tensor<(usize, Const<1>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(128, Const, 28, 28));
    if args.selected("conv 1->64 k4 s2 p1, 128x1x28x28") {
        rows.push((
            "conv 1->64 k4 s2 p1, 128x1x28x28",
            median_ms(args, || drop(sum_all(d_conv1.forward(xd1.leaky_trace())).expect("sum").backward())),
        ));
    }
    let d_conv2 = dev.build_module::<Conv2D<64, 128, 4, 2, 1>, f32>();
    let xd2: Tensor<(usize, Const<64>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(128, Const, 14, 14));
    if args.selected("conv 64->128 k4 s2 p1, 128x64x14x14") {
        rows.push((
            "conv 64->128 k4 s2 p1, 128x64x14x14",
            median_ms(args, || drop(sum_all(d_conv2.forward(xd2.leaky_trace())).expect("sum").backward())),
        ));
    }
    let g_up1 = dev.build_module::<ConvTrans2D<128, 64, 4, 2, 1>, f32>();
    let xg1: Tensor<(usize, Const<128>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(128, Const, 7, 7));
    if args.selected("convT 128->64 k4 s2 p1, 128x128x7x7") {
        rows.push((
            "convT 128->64 k4 s2 p1, 128x128x7x7",
            median_ms(args, || drop(sum_all(g_up1.forward(xg1.leaky_trace())).expect("sum").backward())),
        ));
    }
    let g_up2 = dev.build_module::<ConvTrans2D<64, 1, 4, 2, 1>, f32>();
    let xg2: Tensor<(usize, Const<64>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(128, Const, 14, 14));
    if args.selected("convT 64->1 k4 s2 p1, 128x64x14x14") {
        rows.push((
            "convT 64->1 k4 s2 p1, 128x64x14x14",
            median_ms(args, || drop(sum_all(g_up2.forward(xg2.leaky_trace())).expect("sum").backward())),
        ));
    }
    if args.selected("batch norm 128, 128x128x7x7") {
        let mut bn = dev.build_module::<BatchNorm2D<128>, f32>();
        let x: Tensor<(usize, Const<128>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(128, Const, 7, 7));
        rows.push((
            "batch norm 128, 128x128x7x7",
            median_ms(args, || drop(sum_all(bn.forward_mut(x.leaky_trace())).expect("sum").backward())),
        ));
    }

    let masked = dev.build_module::<MaskedConv2D<64, 64, 7, MaskB>, f32>();
    let x4: Tensor<(usize, Const<64>, usize, usize), f32, Cpu> = dev.sample_normal_like(&(32, Const, 28, 28));
    if args.selected("masked 7x7 64->64, 32x64x28x28") {
        rows.push((
            "masked 7x7 64->64, 32x64x28x28",
            median_ms(args, || drop(sum_all(masked.forward(x4.leaky_trace())).expect("sum").backward())),
        ));
    }

    // PixelCNN's residual blocks: type-B masked 3x3.
    let masked3 = dev.build_module::<MaskedConv2D<64, 64, 3, MaskB>, f32>();
    if args.selected("masked 3x3 64->64, 32x64x28x28") {
        rows.push((
            "masked 3x3 64->64, 32x64x28x28",
            median_ms(args, || drop(sum_all(masked3.forward(x4.leaky_trace())).expect("sum").backward())),
        ));
    }

    if args.selected("max-pool 2x2, 64x32x28x28") {
        rows.push(("max-pool 2x2, 64x32x28x28", image_case::<_, 32>(&dev, &MaxPool2D::<2, 2>, (64, 28, 28), args)));
    }

    let lstm = dev.build_module::<LSTMCell<256, 256>, f32>();
    let x6: Tensor<(usize, Const<256>), f32, Cpu> = dev.sample_normal_like(&(128, Const));
    if args.selected("LSTM cell 256->256, batch 128") {
        rows.push((
            "LSTM cell 256->256, batch 128",
            median_ms(args, || {
                let state = LstmState::<usize, 256, f32>::zeros(&dev, 128);
                drop(sum_all(lstm.try_step(x6.leaky_trace(), state).expect("lstm step").h).expect("sum").backward())
            }),
        ));
    }

    // The recurrent attention model's sizes: small dense layers and an LSTM cell at batch 32.
    let dense = dev.build_module::<Dense<256, 256>, f32>();
    let x7: Tensor<(usize, Const<256>), f32, Cpu> = dev.sample_normal_like(&(32, Const));
    if args.selected("dense 256->256, batch 32") {
        rows.push((
            "dense 256->256, batch 32",
            median_ms(args, || drop(sum_all(dense.forward(x7.leaky_trace())).expect("sum").backward())),
        ));
    }
    if args.selected("LSTM cell 256->256, batch 32") {
        rows.push((
            "LSTM cell 256->256, batch 32",
            median_ms(args, || {
                let state = LstmState::<usize, 256, f32>::zeros(&dev, 32);
                drop(sum_all(lstm.try_step(x7.leaky_trace(), state).expect("lstm step").h).expect("sum").backward())
            }),
        ));
    }

    // mnist_cnn's (the evaluation classifier's) first dense layer, deep and narrow; vae_mnist's two
    // large layers (encoder input, decoder output) at its batch of 128.
    dense_row::<3136, 128>(args, &dev, "dense 3136->128, batch 64", 64, &mut rows);
    dense_row::<784, 400>(args, &dev, "dense 784->400, batch 128", 128, &mut rows);
    dense_row::<400, 784>(args, &dev, "dense 400->784, batch 128", 128, &mut rows);

    rows
}

/// The row `name` (when selected): a `Dense<I, O>` layer's forward and backward pass, input
/// gradient included, on a normal batch of `batch` rows.
fn dense_row<const I: usize, const O: usize>(
    args: &Args,
    dev: &Cpu,
    name: &'static str,
    batch: usize,
    rows: &mut Vec<(&'static str, (f64, String))>,
) {
    if args.selected(name) {
        let fc = dev.build_module::<Dense<I, O>, f32>();
        let x: Tensor<(usize, Const<I>), f32, Cpu> = dev.sample_normal_like(&(batch, Const));
        rows.push((name, median_ms(args, || drop(sum_all(fc.forward(x.leaky_trace())).expect("sum").backward()))));
    }
}

/// Runs the PyTorch script and parses the JSON object on its last stdout line.
fn run_torch(args: &Args, script: &PathBuf) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let output = std::process::Command::new(&args.python)
        .env("GLIBC_TUNABLES", glimpse::nn::GLIBC_TUNABLES)
        .arg(script)
        .args(["--threads", &args.threads.to_string(), "--iters", &args.iters.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--clock", if matches!(args.clock, Clock::Cpu) { "cpu" } else { "wall" }])
        .output()
        .map_err(|e| format!("could not run {} {}: {e}", args.python, script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr)).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().ok_or("the PyTorch script printed nothing")?;
    Ok(serde_json::from_str(last)?)
}
