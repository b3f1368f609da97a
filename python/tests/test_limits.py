"""Sizes that cannot fit in memory are Python exceptions, never an abort of the interpreter."""

import pytest

import glimpse


@pytest.mark.parametrize("num_envs", [10**12, 2**63 - 1])
def test_a_vector_env_too_large_for_memory_raises_memory_error(num_envs):
    with pytest.raises(MemoryError, match="num_envs needs"):
        glimpse.VectorEnv("CartPole-v1", num_envs)


def test_bad_sizes_raise_value_or_overflow_errors():
    with pytest.raises(ValueError, match="at least 1"):
        glimpse.VectorEnv("CartPole-v1", 0)
    # Beyond usize: pyo3 refuses the conversion.
    with pytest.raises(OverflowError):
        glimpse.VectorEnv("CartPole-v1", 2**64)
    with pytest.raises(OverflowError):
        glimpse.VectorEnv("CartPole-v1", -1)
    envs = glimpse.VectorEnv("CartPole-v1", 3)
    assert envs.reset(seed=1)[0].shape == (3, 4)
