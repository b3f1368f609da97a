#!/usr/bin/env python3
"""PyTorch version of examples/mnist_cnn.rs (glimpse_eval::classifier::MnistCnn), to compare speed.

Same network and op order (conv 1->32 k3 p1, max-pool 2, ReLU; conv 32->64 k3 p1, max-pool 2, ReLU,
dropout 0.25 -- pooling before the ReLU is the same function as after it, with less work;
linear 3136->128, ReLU, dropout 0.5, linear 128->10), same loss (mean cross-entropy), Adam 1e-3
decayed x0.7 per epoch, batch 64 with the last partial batch kept, training set reshuffled every
epoch, each training image shifted by up to 2 pixels (zero fill). The data is read from the IDX
files (no torchvision) and kept in memory as tensors, as glimpse does; test accuracy is computed in
batches of 1000 after each epoch.

    python3 benches/mnist_cnn_torch.py --epochs 1 --threads 2

Prints one line per epoch and a final JSON object with seconds_per_epoch (mean of the epochs'
training time, evaluation excluded, as mnist_cnn's summary.json) and test_accuracy.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnist_idx import load


def images(directory, name):
    return torch.from_numpy(load(directory, name).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)


def labels(directory, name):
    return torch.from_numpy(load(directory, name).astype(np.int64))


class MnistCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(3136, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.dropout(F.relu(F.max_pool2d(self.conv2(x), 2)), 0.25, self.training)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(F.dropout(x, 0.5, self.training))


def random_shift(x, max_shift, generator):
    """Shifts each (1, 28, 28) image by up to max_shift pixels in each direction, zero fill."""
    if max_shift == 0:
        return x
    n, m = x.shape[0], max_shift
    padded = F.pad(x, (m, m, m, m))
    dy = torch.randint(-m, m + 1, (n,), generator=generator)
    dx = torch.randint(-m, m + 1, (n,), generator=generator)
    rows = (torch.arange(28)[None, :] - dy[:, None] + m)[:, :, None]  # (n, 28, 1)
    cols = (torch.arange(28)[None, :] - dx[:, None] + m)[:, None, :]  # (n, 1, 28)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]


def main():
    default_dir = os.environ.get("MNIST_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.7)
    p.add_argument("--max-shift", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default=default_dir)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    train_x, train_y = images(args.data_dir, "train-images-idx3-ubyte"), labels(args.data_dir, "train-labels-idx1-ubyte")
    test_x, test_y = images(args.data_dir, "t10k-images-idx3-ubyte"), labels(args.data_dir, "t10k-labels-idx1-ubyte")

    model = MnistCnn()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    seconds, accuracy = [], 0.0
    for epoch in range(1, args.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr * args.lr_decay ** (epoch - 1)
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        total, steps = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            x = random_shift(train_x[idx], args.max_shift, generator)
            loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        seconds.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(test_x[i : i + 1000]).argmax(1) == test_y[i : i + 1000]).sum().item()
                for i in range(0, len(test_x), 1000)
            )
        accuracy = correct / len(test_x)
        print(f"epoch {epoch}: train loss {total / steps:.4f}, test accuracy {100 * accuracy:.2f}%, {seconds[-1]:.1f} s", flush=True)
    print(json.dumps({
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "test_accuracy": accuracy,
        "epochs": args.epochs,
        "threads": args.threads,
        "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
