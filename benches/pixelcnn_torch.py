#!/usr/bin/env python3
"""glimpse's PixelCNN (generative/pixelcnn) in PyTorch, to compare seconds per training step and per
100 sampled digits.

Model: masked 7x7 conv of type A (1 -> 32, padding 3; the taps above the centre row and left of the
centre), 15 residual blocks y = x + conv1x1(16 -> 32)(relu(masked 3x3 type B (16 -> 16, padding 1; type A
plus the centre)(relu(conv1x1(32 -> 16)(relu(x)))))), then relu -> conv1x1 32 -> 32 -> relu -> conv1x1
32 -> 1: one Bernoulli logit per pixel. PyTorch's default init, every layer with a bias. Loss: BCE with
logits summed over the pixels, averaged over the batch (nats per image); Adam (default betas).

Data: the MNIST training images read from the IDX files (no torchvision), shuffled, binarised afresh
every batch (each pixel 1 with probability grey/255); the last partial batch of an epoch is kept. The
test images are binarised once with numpy's RNG seeded by --test-binarization-seed: not the same draw
as glimpse's, so test NLLs agree in distribution only.

    python3 benches/pixelcnn_torch.py --threads 2 --json-out torch.json            # timing only
    python3 benches/pixelcnn_torch.py --epochs 1 --sample-digits 0                 # plus test NLL
    python3 benches/pixelcnn_torch.py --threads 1 --steps 3 --warmup 1 --sample-digits 2   # smoke test

Timing mode (--epochs 0): --warmup untimed steps, then --steps steps each timed with perf_counter
(forward, backward, Adam step); the median is seconds_per_step. Epoch mode (--epochs E): E full epochs
over --train-images, the test NLL after each; seconds_per_step is the median over all their steps.
Then, unless --sample-digits is 0, the naive sampler: 784 full forward passes over a batch of N
images, filling the pixels in raster order with Bernoulli draws; its time is scaled to 100 digits.
Prints one line per epoch, a summary line and the JSON object (also to --json-out). The data
directory is --data-dir, else $MNIST_DIR, else ../shared/data/mnist beside the checkout.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnist_idx import load


class MaskedConv2d(nn.Conv2d):
    """A square conv whose taps at and after the centre in raster order are zeroed (type A), or those
    after the centre only (type B), by a constant mask multiplied into the weight in forward."""

    def __init__(self, kind, c_in, c_out, k):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.zeros(1, 1, k, k)
        mask[:, :, : k // 2, :] = 1
        mask[:, :, k // 2, : k // 2 + (kind == "B")] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ResidualBlock(nn.Module):
    def __init__(self, c=32, h=16):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(c, h, 1), nn.ReLU(), MaskedConv2d("B", h, h, 3),
                                 nn.ReLU(), nn.Conv2d(h, c, 1))

    def forward(self, x):
        return x + self.net(x)


def pixelcnn(c=32, h=16, blocks=15):
    return nn.Sequential(MaskedConv2d("A", 1, c, 7), *[ResidualBlock(c, h) for _ in range(blocks)],
                         nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, 1, 1))


def nll_per_image(logits, x):
    """Summed Bernoulli negative log-likelihood of each image, nats: shape (batch,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def batches(grey, batch_size, gen):
    """Endless mini-batches of the (N, 1, 28, 28) grey/255 images: each epoch reshuffled, each batch
    binarised afresh; yields (epoch from 0, batch)."""
    epoch = 0
    while True:
        order = torch.randperm(len(grey), generator=gen)
        for i in range(0, len(grey), batch_size):
            yield epoch, torch.bernoulli(grey[order[i : i + batch_size]], generator=gen)
        epoch += 1


def train_step(model, opt, x):
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = nll_per_image(model(x), x).mean()
    loss.backward()
    opt.step()
    return time.perf_counter() - start, loss.item()


@torch.no_grad()
def test_nll(model, test, batch=100):
    model.eval()
    total = sum(nll_per_image(model(test[i : i + batch]), test[i : i + batch]).sum().item()
                for i in range(0, len(test), batch))
    model.train()
    return total / len(test)


@torch.no_grad()
def sample(model, n, gen):
    """n digits by the naive sampler: one full forward pass per pixel, in raster order."""
    model.eval()
    x = torch.zeros(n, 1, 28, 28)
    for r in range(28):
        for c in range(28):
            p = torch.sigmoid(model(x)[:, :, r, c])
            x[:, :, r, c] = torch.bernoulli(p, generator=gen)
    model.train()
    return x


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.environ.get("MNIST_DIR") or os.path.join(here, "..", "..", "shared", "data", "mnist")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="epoch mode: lr multiplied by this after every epoch (glimpse's default is 0.95)")
    p.add_argument("--steps", type=int, default=200, help="timed training steps (timing mode)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before them (timing mode)")
    p.add_argument("--epochs", type=int, default=0, help="train E full epochs instead (0: timing only)")
    p.add_argument("--sample-digits", type=int, default=100, help="digits sampled for timing (0: skip)")
    p.add_argument("--train-images", type=int, default=60000, help="the first N training images")
    p.add_argument("--test-images", type=int, default=10000, help="the first N test images")
    p.add_argument("--test-binarization-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default=default_dir)
    p.add_argument("--json-out", help="also write the JSON object to this file")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    train = load(args.data_dir, "train-images-idx3-ubyte")[: args.train_images]
    grey = torch.from_numpy(train.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    model = pixelcnn()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    stream = batches(grey, args.batch_size, gen)
    result = {"framework": f"pytorch {torch.__version__}", "threads": args.threads,
              "batch_size": args.batch_size, "parameters": sum(q.numel() for q in model.parameters())}

    step_seconds = []
    if args.epochs == 0:
        for i in range(args.warmup + args.steps):
            seconds, _ = train_step(model, opt, next(stream)[1])
            if i >= args.warmup:
                step_seconds.append(seconds)
    else:
        test = load(args.data_dir, "t10k-images-idx3-ubyte")[: args.test_images].reshape(-1, 1, 28, 28)
        rng = np.random.default_rng(args.test_binarization_seed)
        test = torch.from_numpy((rng.random(test.shape) < test / 255.0).astype(np.float32))
        steps_per_epoch = -(-len(grey) // args.batch_size)
        epoch_seconds, nlls = [], []
        for epoch in range(args.epochs):
            for group in opt.param_groups:
                group["lr"] = args.lr * args.lr_decay ** epoch
            epoch_steps, loss_sum = [], 0.0
            for _ in range(steps_per_epoch):
                seconds, loss = train_step(model, opt, next(stream)[1])
                epoch_steps.append(seconds)
                loss_sum += loss
            step_seconds += epoch_steps
            epoch_seconds.append(sum(epoch_steps))
            nlls.append(test_nll(model, test))
            print(f"epoch {epoch + 1}: {epoch_seconds[-1]:.1f} s ({steps_per_epoch} steps), train nll "
                  f"{loss_sum / steps_per_epoch:.2f}, test nll {nlls[-1]:.2f} nats", flush=True)
        result.update(epochs=args.epochs, seconds_per_epoch=statistics.median(epoch_seconds),
                      epoch_seconds=epoch_seconds, test_nll_nats=nlls[-1], test_nll_per_epoch=nlls,
                      test_images=len(test), test_binarization="numpy default_rng(%d), not glimpse's draw"
                      % args.test_binarization_seed)
    result.update(steps=len(step_seconds), seconds_per_step=statistics.median(step_seconds))

    if args.sample_digits > 0:
        start = time.perf_counter()
        sample(model, args.sample_digits, gen)
        seconds = time.perf_counter() - start
        result.update(sample_digits=args.sample_digits, seconds_per_100_samples=seconds * 100 / args.sample_digits)

    line = (f"pytorch {torch.__version__}, {args.threads} threads, batch {args.batch_size}: "
            f"{result['seconds_per_step'] * 1e3:.1f} ms/step (median of {result['steps']})")
    if "seconds_per_100_samples" in result:
        line += f", {result['seconds_per_100_samples']:.1f} s per 100 digits ({args.sample_digits} sampled)"
    if args.epochs:
        line += (f", {result['seconds_per_epoch']:.1f} s/epoch, test nll {result['test_nll_nats']:.2f} nats "
                 "(own binarisation of the test set)")
    print(line, flush=True)
    print(json.dumps(result))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
