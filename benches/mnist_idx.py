"""Reads the MNIST IDX files (raw or .gz) into numpy arrays, for the PyTorch benchmark scripts."""
import gzip
import os

import numpy as np


def read_idx(path):
    """The array stored in one IDX file (uint8 data, big-endian dimension sizes)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(directory, name):
    """`name` or `name.gz` from `directory`; exits with a message naming MNIST_DIR when neither exists."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return read_idx(path)
    raise SystemExit(f"{name}[.gz] not found in {directory}; set MNIST_DIR")
