#!/usr/bin/env python3
"""PyTorch version of the Recurrent Attention Model (Mnih et al. 2014), to time side by side with
agents/ram in glimpse (our Rust crate glimpse-ram). It mirrors that crate: the same tasks (MNIST,
translated 60x60, cluttered 60x60 with 4 distractors, cluttered 100x100 with 8), the same glimpse
sensor (square patches of side patch*2^s around [x, y] in [-1, 1]^2, top-left column
floor((x+1)/2*W - S/2 + 0.5), zeros outside the canvas, each averaged down to patch x patch), the
same networks (ReLU RNN or LSTM core, Gaussian location policy of fixed std, baseline, classifier),
the same hybrid loss (NLL + baseline MSE + REINFORCE) and Adam.

The canvases are composed per mini-batch from a numpy Generator seeded by --seed; the test set
is the 10,000 test digits composed once with seed 0 and evaluated with the stochastic policy (one
path per image, fixed noise seed) after each epoch. Only the training loop is timed (composition
included, evaluation excluded). MNIST is read from $MNIST_DIR (default ../shared/data/mnist from
the repository root). The venv is Debian's python3-torch 1.13 seen through
`python3 -m venv --system-site-packages /root/venvs/torch`, with libopenblas0-openmp installed
(without it Debian's torch falls back to the reference BLAS, about 15x slower here).

    nice -n 10 /root/venvs/torch/bin/python benches/ram_torch.py --epochs 1 --train-images 5000
    nice -n 10 /root/venvs/torch/bin/python benches/ram_torch.py --task cluttered60 --patch 12 --scales 3
    nice -n 10 /root/venvs/torch/bin/python benches/ram_torch.py --core lstm --json-out ram_torch.json

Prints one line per epoch; --json-out writes seconds_per_epoch (median of the epochs' training
times), epoch_seconds and test_error (after the last epoch).
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
from torch.distributions import Normal

from mnist_idx import load

DIGIT, CROP = 28, 8
SIDES = {"mnist": 28, "translated": 60, "cluttered60": 60, "cluttered100": 100}
DISTRACTORS = {"mnist": 0, "translated": 0, "cluttered60": 4, "cluttered100": 8}


def add_clipped(canvas, rows, cols, patch):
    """Adds patch (B, k, k) onto canvas (B, side, side) at top-left (rows, cols), saturating at 255."""
    b, k = np.arange(len(canvas))[:, None, None], patch.shape[1]
    r = rows[:, None, None] + np.arange(k)[None, :, None]
    c = cols[:, None, None] + np.arange(k)[None, None, :]
    canvas[b, r, c] = np.minimum(canvas[b, r, c].astype(np.uint16) + patch, 255).astype(np.uint8)


def compose(task, digits, index, rng):
    """The uint8 canvases (B, side, side) of digits[index]; distractors come from `digits` too."""
    if task == "mnist":
        return digits[index]
    side, n = SIDES[task], len(index)
    canvas = np.zeros((n, side, side), np.uint8)
    offsets = np.arange(CROP)
    for _ in range(DISTRACTORS[task]):
        other = rng.integers(0, len(digits), n)
        cr, cc = rng.integers(0, DIGIT - CROP, (2, n), endpoint=True)
        crop = digits[other[:, None, None], (cr[:, None] + offsets)[:, :, None], (cc[:, None] + offsets)[:, None, :]]
        r, c = rng.integers(0, side - CROP, (2, n), endpoint=True)
        add_clipped(canvas, r, c, crop)
    r, c = rng.integers(0, side - DIGIT, (2, n), endpoint=True)
    add_clipped(canvas, r, c, digits[index])
    return canvas


def to_float(canvas):
    return torch.from_numpy(canvas).float().div_(255.0)


class Retina:
    """`scales` patches of patch x patch around locations [x, y] (clamped to [-1, 1]), batched."""

    def __init__(self, patch, scales):
        self.patch, self.scales = patch, scales
        self.pad = ((patch << (scales - 1)) + 1) // 2  # half of the widest square, rounded up

    def __len__(self):
        return self.scales * self.patch * self.patch

    def read(self, canvases, loc):
        """Glimpses (B, len) of canvases (B, H, W) at loc (B, 2)."""
        n, h, w = canvases.shape
        padded = F.pad(canvases, (self.pad,) * 4)
        x, y = loc.double().clamp(-1, 1).unbind(1)
        batch = torch.arange(n)[:, None, None]
        out = []
        for s in range(self.scales):
            side = self.patch << s
            col = torch.floor((x + 1) / 2 * w - side / 2 + 0.5).long() + self.pad
            row = torch.floor((y + 1) / 2 * h - side / 2 + 0.5).long() + self.pad
            span = torch.arange(side)
            square = padded[batch, (row[:, None] + span)[:, :, None], (col[:, None] + span)[:, None, :]]
            if s > 0:
                square = F.avg_pool2d(square.unsqueeze(1), 1 << s).squeeze(1)
            out.append(square.flatten(1))
        return torch.cat(out, 1)


class Ram(nn.Module):
    def __init__(self, glimpse_len, core):
        super().__init__()
        self.what, self.place = nn.Linear(glimpse_len, 128), nn.Linear(2, 128)
        self.what_out, self.place_out = nn.Linear(128, 256), nn.Linear(128, 256)
        self.core = core
        if core == "rnn":
            self.core_in, self.core_rec = nn.Linear(256, 256), nn.Linear(256, 256)
        else:
            self.lstm = nn.LSTMCell(256, 256)
        self.loc_hidden, self.loc_mean = nn.Linear(256, 128), nn.Linear(128, 2)
        self.baseline = nn.Linear(256, 1)
        self.classifier = nn.Linear(256, 10)

    def episode(self, canvases, retina, glimpses, std, gen):
        """Class log-probabilities (B, 10), and per policy step the log pi (B,) and baselines (B,)."""
        n = canvases.shape[0]
        loc = torch.rand(n, 2, generator=gen) * 2 - 1
        h = torch.zeros(n, 256)
        c = torch.zeros(n, 256)
        log_pis, baselines = [], []
        for t in range(1, glimpses + 1):
            what = F.relu(self.what(retina.read(canvases, loc)))
            where = F.relu(self.place(loc))
            g = F.relu(self.what_out(what) + self.place_out(where))
            if self.core == "rnn":
                h = F.relu(self.core_in(g) + self.core_rec(h))
            else:
                h, c = self.lstm(g, (h, c))
            if t == glimpses:
                break
            state = h.detach()
            mu = torch.tanh(self.loc_mean(F.relu(self.loc_hidden(state))))
            with torch.no_grad():
                sample = mu + std * torch.randn(mu.shape, generator=gen)
            log_pis.append(Normal(mu, std).log_prob(sample).sum(1))
            baselines.append(self.baseline(state).squeeze(1))
            loc = sample.clamp(-1, 1)
        return F.log_softmax(self.classifier(h), 1), log_pis, baselines


def hybrid_loss(log_probs, log_pis, baselines, labels):
    """NLL + MSE(baseline, reward) + REINFORCE, and the rewards (1 for a right answer)."""
    reward = (log_probs.argmax(1) == labels).float().detach()
    loss = F.nll_loss(log_probs, labels)
    if log_pis:
        log_pi, b = torch.stack(log_pis, 1), torch.stack(baselines, 1)
        advantage = reward[:, None] - b
        loss = loss + F.mse_loss(b, reward[:, None].expand_as(b))
        loss = loss - (log_pi * advantage.detach()).sum(1).mean()
    return loss, reward


def test_error(model, test_canvases, test_labels, args, retina):
    gen = torch.Generator().manual_seed(0)
    wrong = 0
    with torch.no_grad():
        for i in range(0, len(test_labels), 1000):
            canvases = to_float(test_canvases[i : i + 1000])
            log_probs, _, _ = model.episode(canvases, retina, args.glimpses, args.std, gen)
            wrong += (log_probs.argmax(1) != test_labels[i : i + 1000]).sum().item()
    return wrong / len(test_labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=list(SIDES), default="mnist")
    p.add_argument("--glimpses", type=int, default=6)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--scales", type=int, default=1)
    p.add_argument("--core", choices=["rnn", "lstm"], default="rnn")
    p.add_argument("--std", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-images", type=int, default=60000, help="the first N training digits")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json-out", help="write the timings and test error here as JSON")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mnist = os.environ.get("MNIST_DIR", os.path.join(root, "..", "shared", "data", "mnist"))
    train_digits = load(mnist, "train-images-idx3-ubyte")[: args.train_images]
    train_labels = torch.from_numpy(load(mnist, "train-labels-idx1-ubyte")[: args.train_images].astype(np.int64))
    test_digits = load(mnist, "t10k-images-idx3-ubyte")
    test_labels = torch.from_numpy(load(mnist, "t10k-labels-idx1-ubyte").astype(np.int64))
    test_rng = np.random.default_rng(0)
    chunks = [np.arange(i, min(i + 1000, len(test_digits))) for i in range(0, len(test_digits), 1000)]
    test_canvases = np.concatenate([compose(args.task, test_digits, c, test_rng) for c in chunks])

    retina = Retina(args.patch, args.scales)
    model = Ram(len(retina), args.core)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    data_rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(train_labels)
    epoch_seconds, error = [], None
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total_loss, right = 0.0, 0.0
        for i in range(0, n, args.batch_size):
            index = perm[i : i + args.batch_size]
            canvases = to_float(compose(args.task, train_digits, index.numpy(), data_rng))
            labels = train_labels[index]
            log_probs, log_pis, baselines = model.episode(canvases, retina, args.glimpses, args.std, gen)
            loss, reward = hybrid_loss(log_probs, log_pis, baselines, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
            right += reward.sum().item()
        epoch_seconds.append(time.perf_counter() - start)
        error = test_error(model, test_canvases, test_labels, args, retina)
        print(
            f"epoch {epoch} loss {total_loss / n:.4f} accuracy {right / n:.4f} "
            f"test_error {error:.4f} seconds {epoch_seconds[-1]:.2f}",
            flush=True,
        )

    if args.json_out:
        summary = {
            "framework": "pytorch",
            "torch_version": torch.__version__,
            "task": args.task,
            "glimpses": args.glimpses,
            "patch": args.patch,
            "scales": args.scales,
            "core": args.core,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "train_images": n,
            "seconds_per_epoch": statistics.median(epoch_seconds),
            "epoch_seconds": epoch_seconds,
            "test_error": error,
            "threads": args.threads,
        }
        with open(args.json_out, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
