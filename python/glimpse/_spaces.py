"""gymnasium spaces from the dicts the Rust core describes its spaces with."""

import numpy as np
from gymnasium import spaces


def to_gymnasium(desc: dict) -> spaces.Space:
    """A ``Discrete`` or float32 ``Box`` space."""
    if desc["kind"] == "discrete":
        return spaces.Discrete(desc["n"], start=desc["start"])
    shape = tuple(desc["shape"])
    low = np.asarray(desc["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(desc["high"], dtype=np.float32).reshape(shape)
    return spaces.Box(low, high, shape=shape, dtype=np.float32)
