#!/usr/bin/env python3
"""The DCGAN of glimpse's gan_mnist example in PyTorch (issue 12), to compare speed and sample quality.

Data: the MNIST training set (60,000 images, x/255 in [0, 1]) read from the IDX files (no torchvision)
and kept in memory, reshuffled every epoch from --seed, batch 128 with the last partial batch dropped
(468 steps per epoch).

Generator: z ~ N(0, I) of dim 100 -> Linear(100, 128*7*7) -> view (128, 7, 7) -> BatchNorm2d(128) -> ReLU
-> ConvTranspose2d(128, 64, 4, 2, 1) -> BatchNorm2d(64) -> ReLU -> ConvTranspose2d(64, 1, 4, 2, 1) -> Sigmoid.
Discriminator: Conv2d(1, 64, 4, 2, 1) -> LeakyReLU(0.2) -> Conv2d(64, 128, 4, 2, 1) -> BatchNorm2d(128)
-> LeakyReLU(0.2) -> Flatten -> Linear(6272, 1), one logit.
Init as the DCGAN paper and PyTorch's dcgan example: conv, transposed-conv and linear weights N(0, 0.02),
biases 0; batch-norm weights N(1, 0.02), biases 0.

Each step, as PyTorch's dcgan example: D on the real batch (label 1) and on G(z).detach() (label 0) as two
forward passes (each with its own batch-norm statistics), D loss = the sum of the two mean BCE-with-logits
losses, one Adam step on D; then the non-saturating G loss BCE(D(G(z)), 1) on the same fake batch through
the updated D, one Adam step on G. Adam lr 2e-4, betas (0.5, 0.999) for both. D(x) and D(G(z)) are the
mean sigmoid of D's logits in the D step (before its update), averaged over the epoch as the losses are.

After training, --num-samples samples from G in eval mode (running batch-norm statistics) without grad,
as uint8 [N, 28, 28] = round(255 x), are written to --out with numpy.save, and a 10x10 PNG grid of the
first 100 beside it (same name, .png) when PIL is installed.

    python3 benches/gan_torch.py --epochs 5 --threads 2 --out runs/gan_torch/samples.npy
    python3 benches/gan_torch.py --epochs 1 --steps 50        # a quick timing check

Prints one line per epoch (seconds of training, perf_counter; mean D loss, G loss, D(x), D(G(z))), the
median seconds per epoch, and a final JSON object (also written to --json-out if given). The data
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

LATENT = 100


CLASSES = 10


class Generator(nn.Module):
    """With `conditional`, the input is z followed by the label's one-hot code (110 values)."""

    def __init__(self, conditional=False):
        super().__init__()
        self.conditional = conditional
        self.fc = nn.Linear(LATENT + (CLASSES if conditional else 0), 128 * 7 * 7)
        self.net = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),  # 7 -> 14
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1),  # 14 -> 28
            nn.Sigmoid(),
        )

    def forward(self, z, labels=None):
        if self.conditional:
            z = torch.cat([z, F.one_hot(labels, CLASSES).float()], dim=1)
        return self.net(self.fc(z).view(-1, 128, 7, 7))


class Discriminator(nn.Module):
    """With `conditional`, a projection discriminator (Miyato and Koyama 2018): the logit gains
    <embed(y), h>, h the 6272 features the final linear layer reads."""

    def __init__(self, conditional=False):
        super().__init__()
        self.embed = nn.Embedding(CLASSES, 128 * 7 * 7) if conditional else None
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 4, stride=2, padding=1),  # 28 -> 14
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, stride=2, padding=1),  # 14 -> 7
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(128 * 7 * 7, 1)

    def forward(self, x, labels=None):
        h = self.features(x)
        logits = self.head(h)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h).sum(dim=1, keepdim=True)
        return logits


def dcgan_init(module):
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def save_grid(samples, path, rows=10):
    """A rows x rows PNG grid of the first rows^2 uint8 [N, 28, 28] samples; False when PIL is missing."""
    try:
        from PIL import Image
    except ImportError:
        return False
    n = min(rows * rows, len(samples))
    grid = np.zeros((rows * 28, rows * 28), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, rows)
        grid[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28] = samples[i]
    Image.fromarray(grid, mode="L").save(path)
    return True


def write_samples(g, args, out):
    """--num-samples samples of G in eval mode (running batch-norm statistics), uint8 [N, 28, 28], to
    `out` (numpy.save) and a PNG grid beside it; the latents come from a generator seeded with
    --seed + 2, so every call draws the same latents; a conditional G draws the labels 0..9 in turn."""
    g.eval()
    sample_gen = torch.Generator().manual_seed(args.seed + 2)
    chunks = []
    with torch.no_grad():
        for i in range(0, args.num_samples, 1000):
            n = min(1000, args.num_samples - i)
            z = torch.randn(n, LATENT, generator=sample_gen)
            labels = torch.arange(i, i + n) % CLASSES
            chunks.append((g(z, labels) * 255.0).round().clamp(0, 255).to(torch.uint8)[:, 0])
    samples = torch.cat(chunks).numpy() if chunks else np.zeros((0, 28, 28), dtype=np.uint8)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    np.save(out, samples)
    png = os.path.splitext(out)[0] + ".png"
    grid = save_grid(samples, png) if len(samples) else False
    print(f"wrote {samples.shape} samples to {out}" + (f" and a grid to {png}" if grid else ""), flush=True)
    return samples, png, grid


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.environ.get("MNIST_DIR") or os.path.join(here, "..", "..", "shared", "data", "mnist")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="stop each epoch after this many steps (timing checks)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--conditional", type=int, choices=[0, 1], default=1,
                   help="1: labels to both networks (z + one-hot to G, projection D), as gan_mnist's default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--num-samples", type=int, default=10000)
    p.add_argument("--out", default=os.path.join(here, "..", "runs", "gan_torch", "samples.npy"),
                   help="the samples' .npy (uint8 [N, 28, 28]); the PNG grid goes beside it")
    p.add_argument("--data-dir", default=default_dir)
    p.add_argument("--json-out", help="also write the final JSON object to this file")
    p.add_argument("--sample-at", type=int, nargs="*", default=[],
                   help="also write --num-samples samples after these epochs, to OUT-epochE.npy")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    shuffle = torch.Generator().manual_seed(args.seed + 1)
    train = torch.from_numpy(load(args.data_dir, "train-images-idx3-ubyte").reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    train_labels = torch.from_numpy(load(args.data_dir, "train-labels-idx1-ubyte").astype(np.int64))

    conditional = bool(args.conditional)
    g, d = Generator(conditional), Discriminator(conditional)
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    opt_g = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(0.5, 0.999))
    b = args.batch_size
    ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
    steps_per_epoch = len(train) // b
    if args.steps is not None:
        steps_per_epoch = min(steps_per_epoch, args.steps)

    epoch_seconds, last = [], {}
    for epoch in range(1, args.epochs + 1):
        g.train()
        d.train()
        sums = torch.zeros(4, dtype=torch.float64)  # D loss, G loss, D(x), D(G(z))
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=shuffle)
        for step in range(steps_per_epoch):
            index = order[step * b : (step + 1) * b]
            real, real_labels = train[index], train_labels[index]
            fake_labels = torch.randint(CLASSES, (b,))
            fake = g(torch.randn(b, LATENT), fake_labels)

            opt_d.zero_grad(set_to_none=True)
            real_logits = d(real, real_labels)
            fake_logits = d(fake.detach(), fake_labels)
            loss_d = F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(fake_logits, zeros)
            loss_d.backward()
            opt_d.step()

            opt_g.zero_grad(set_to_none=True)
            loss_g = F.binary_cross_entropy_with_logits(d(fake, fake_labels), ones)
            loss_g.backward()
            opt_g.step()

            with torch.no_grad():
                sums += torch.stack([loss_d, loss_g, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()]).double()
        epoch_seconds.append(time.perf_counter() - start)
        if epoch in args.sample_at:
            stem, ext = os.path.splitext(os.path.normpath(args.out))
            write_samples(g, args, f"{stem}-epoch{epoch}{ext}")
            g.train()
        m = (sums / steps_per_epoch).tolist()
        last = {"d_loss": m[0], "g_loss": m[1], "d_x": m[2], "d_g_z": m[3]}
        print(f"epoch {epoch}: {epoch_seconds[-1]:.2f} s ({steps_per_epoch} steps), D loss {m[0]:.4f}, "
              f"G loss {m[1]:.4f}, D(x) {m[2]:.4f}, D(G(z)) {m[3]:.4f}", flush=True)
    median = statistics.median(epoch_seconds)
    print(f"median seconds per epoch: {median:.2f}", flush=True)

    samples, png, grid = write_samples(g, args, os.path.normpath(args.out))
    result = {
        "framework": f"pytorch {torch.__version__}",
        "threads": args.threads,
        "conditional": conditional,
        "epochs": args.epochs,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": median,
        "epoch_seconds": epoch_seconds,
        **last,
        "samples": os.path.normpath(args.out),
        "grid": png if grid else None,
    }
    print(json.dumps(result))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
