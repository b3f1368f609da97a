#!/usr/bin/env python3
"""The PyTorch example's MLP VAE (pytorch/examples, vae/main.py) on the same MNIST files as glimpse.

Same architecture (784-400-20-400-784), same loss (summed BCE + KL, reported as the sum over the
data set divided by its size), batch 128, Adam 1e-3, training set shuffled every epoch, test set in
order. The data is read from the IDX files (no torchvision) and kept in memory, as glimpse does.

    python3 benches/vae_torch.py --epochs 10 --threads 2 --json-out torch.json

Prints one line per epoch and a final JSON object with seconds_per_epoch (median of the epochs'
training time, evaluation excluded) and test_loss after the last epoch.
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


def load_images(directory, name):
    return torch.from_numpy(load(directory, name).reshape(-1, 784).astype(np.float32) / 255.0)


class VAE(nn.Module):
    def __init__(self, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, latent)
        self.fc22 = nn.Linear(400, latent)
        self.fc3 = nn.Linear(latent, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main():
    default_dir = os.environ.get("MNIST_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default=default_dir)
    p.add_argument("--output-bias", choices=["pytorch", "data-mean"], default="pytorch",
                   help="pytorch: the example's nn.Linear init; data-mean: fc4's bias starts at the log-odds of "
                        "the mean training image clipped to [0.001, 0.999], as glimpse's default")
    p.add_argument("--json-out", help="also write the final JSON object to this file")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = load_images(args.data_dir, "train-images-idx3-ubyte")
    test = load_images(args.data_dir, "t10k-images-idx3-ubyte")
    model = VAE()
    if args.output_bias == "data-mean":
        mean = train.mean(0).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            model.fc4.bias.copy_(torch.log(mean / (1 - mean)))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    epoch_seconds, test_loss = [], float("nan")
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        train_loss = 0.0
        order = torch.randperm(len(train))
        for i in range(0, len(train), args.batch_size):
            data = train[order[i : i + args.batch_size]]
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = loss_function(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)

        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for i in range(0, len(test), args.batch_size):
                data = test[i : i + args.batch_size]
                recon, mu, logvar = model(data)
                test_loss += loss_function(recon, data, mu, logvar).item()
        test_loss /= len(test)
        print(f"epoch {epoch}: train loss {train_loss / len(train):.4f} test loss {test_loss:.4f} "
              f"({epoch_seconds[-1]:.2f} s)", flush=True)

    result = {
        "framework": f"pytorch {torch.__version__}",
        "threads": args.threads,
        "output_bias": args.output_bias,
        "epochs": args.epochs,
        "seconds_per_epoch": statistics.median(epoch_seconds),
        "epoch_seconds": epoch_seconds,
        "test_loss": test_loss,
    }
    print(json.dumps(result))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
