#!/usr/bin/env python3
"""PyTorch reference timings for glimpse's nn benchmark (examples/nn_bench.rs).

Times forward + backward (loss = output.sum(), input gradients included) for the same cases
as the Rust side, on the CPU with a fixed thread count, and prints one JSON object
{case: median_milliseconds, "torch_version": ...} on the last line of stdout.

    python3 benches/nn_torch.py --threads 2 --iters 20
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def pixelcnn_mask(k: int, include_centre: bool) -> torch.Tensor:
    """Spatial PixelCNN mask: rows above the centre, and the centre row left of it (+ centre for B)."""
    m = torch.zeros(k, k)
    c = k // 2
    m[:c, :] = 1
    m[c, :c] = 1
    if include_centre:
        m[c, c] = 1
    return m


def cases():
    """(name, callable, input shape, parameters) for each benchmark row."""
    mask = pixelcnn_mask(7, True)
    masked = torch.nn.Conv2d(64, 64, 7, padding=3)

    def masked_forward(x):
        return F.conv2d(x, masked.weight * mask, masked.bias, padding=3)

    mask3 = pixelcnn_mask(3, True)
    masked3 = torch.nn.Conv2d(64, 64, 3, padding=1)

    def masked3_forward(x):
        return F.conv2d(x, masked3.weight * mask3, masked3.bias, padding=1)

    lstm = torch.nn.LSTMCell(256, 256)
    h0, c0 = torch.zeros(128, 256), torch.zeros(128, 256)

    def lstm_forward(x):
        h, _c = lstm(x, (h0, c0))
        return h

    h32, c32 = torch.zeros(32, 256), torch.zeros(32, 256)

    def lstm32_forward(x):
        h, _c = lstm(x, (h32, c32))
        return h

    dense = torch.nn.Linear(256, 256)
    fc = torch.nn.Linear(3136, 128)
    vae_in, vae_out = torch.nn.Linear(784, 400), torch.nn.Linear(400, 784)

    conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
    conv2 = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1)
    cnn_conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
    convt = torch.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    d_conv1 = torch.nn.Conv2d(1, 64, 4, stride=2, padding=1)
    d_conv2 = torch.nn.Conv2d(64, 128, 4, stride=2, padding=1)
    g_up1 = torch.nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
    g_up2 = torch.nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1)
    bn = torch.nn.BatchNorm2d(128)
    return [
        ("conv 1->32 k3 p1, 64x1x28x28", conv1, (64, 1, 28, 28), conv1.parameters()),
        ("conv 32->64 k3 s2 p1, 64x32x28x28", conv2, (64, 32, 28, 28), conv2.parameters()),
        ("conv 32->64 k3 p1, 64x32x14x14", cnn_conv2, (64, 32, 14, 14), cnn_conv2.parameters()),
        ("convT 64->32 k4 s2 p1, 64x64x7x7", convt, (64, 64, 7, 7), convt.parameters()),
        ("conv 1->64 k4 s2 p1, 128x1x28x28", d_conv1, (128, 1, 28, 28), d_conv1.parameters()),
        ("conv 64->128 k4 s2 p1, 128x64x14x14", d_conv2, (128, 64, 14, 14), d_conv2.parameters()),
        ("convT 128->64 k4 s2 p1, 128x128x7x7", g_up1, (128, 128, 7, 7), g_up1.parameters()),
        ("convT 64->1 k4 s2 p1, 128x64x14x14", g_up2, (128, 64, 14, 14), g_up2.parameters()),
        ("batch norm 128, 128x128x7x7", bn, (128, 128, 7, 7), bn.parameters()),
        ("masked 7x7 64->64, 32x64x28x28", masked_forward, (32, 64, 28, 28), masked.parameters()),
        ("max-pool 2x2, 64x32x28x28", torch.nn.MaxPool2d(2, 2), (64, 32, 28, 28), []),
        ("LSTM cell 256->256, batch 128", lstm_forward, (128, 256), lstm.parameters()),
        ("masked 3x3 64->64, 32x64x28x28", masked3_forward, (32, 64, 28, 28), masked3.parameters()),
        ("dense 256->256, batch 32", dense, (32, 256), dense.parameters()),
        ("LSTM cell 256->256, batch 32", lstm32_forward, (32, 256), lstm.parameters()),
        ("dense 3136->128, batch 64", fc, (64, 3136), fc.parameters()),
        ("dense 784->400, batch 128", vae_in, (128, 784), vae_in.parameters()),
        ("dense 400->784, batch 128", vae_out, (128, 400), vae_out.parameters()),
    ]


def time_case(fn, shape, params, iters: int, warmup: int, clock) -> float:
    x = torch.randn(*shape, requires_grad=True)
    params = list(params)
    samples = []
    for i in range(warmup + iters):
        x.grad = None
        for p in params:
            p.grad = None
        start = clock()
        fn(x).sum().backward()
        elapsed = clock() - start
        if i >= warmup:
            samples.append(elapsed * 1000.0)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: process CPU time (use with --threads 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"torch_version": torch.__version__, "threads": torch.get_num_threads()}
    for name, fn, shape, params in cases():
        clock = time.perf_counter if args.clock == "wall" else time.process_time
        result[name] = time_case(fn, shape, params, args.iters, args.warmup, clock)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
