"""Kernel tests run Triton's interpreter on the CPU; it must be chosen before Triton is imported."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tolerances on max |out - ref| fitted to the dtype (the interpreter's bf16 dot is wrong: not tested).
TOL = {torch.float32: 2e-4, torch.float16: 2e-2}


@pytest.fixture
def rng():
    """A fresh generator per test, seeded from the OS so every run draws new inputs; the seed is
    printed so a failure can be replayed."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def poisoned(shape, dtype):
    """An output buffer full of NaN, so that any element a kernel fails to write shows up."""
    return torch.full(shape, float("nan"), dtype=dtype)
