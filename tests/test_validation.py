"""Tests of the argument validators: every error names the argument, and
nothing is silently clipped or coerced."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mtdlearn._validation import check_array_float, check_int, check_random_generator, check_real


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------- scalars
@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_check_int_accepts_integers(value):
    out = check_int(value, "n", minimum=0, maximum=5)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value, exc, match", [
    (3.0, TypeError, "n must be an integer"),
    (True, TypeError, "n must be an integer"),
    (np.bool_(True), TypeError, "n must be an integer"),
    ("3", TypeError, "n must be an integer"),
    (None, TypeError, "n must be an integer"),
    (-1, ValueError, "n must be >= 0, got -1"),
    (6, ValueError, "n must be <= 5, got 6"),
])
def test_check_int_rejects(value, exc, match):
    with pytest.raises(exc, match=match):
        check_int(value, "n", minimum=0, maximum=5)


def test_check_real():
    assert check_real(2, "x") == 2.0 and type(check_real(2, "x")) is float
    assert check_real(np.float32(0.5), "x") == 0.5
    assert check_real(0.0, "x", minimum=0.0) == 0.0
    assert check_real(1.0, "x", maximum=1.0) == 1.0
    with pytest.raises(ValueError, match="x must be > 0"):
        check_real(0.0, "x", minimum=0.0, strict=True)
    with pytest.raises(ValueError, match="x must be >= 0"):
        check_real(-1e-300, "x", minimum=0.0)
    with pytest.raises(ValueError, match="x must be < 1"):
        check_real(1.0, "x", maximum=1.0, strict_max=True)
    with pytest.raises(ValueError, match="x must be <= 1"):
        check_real(1.5, "x", maximum=1.0)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="x must be finite"):
            check_real(bad, "x")
    for bad in ("1", True, None, 1j, [1.0]):
        with pytest.raises(TypeError, match="x must be a real number"):
            check_real(bad, "x")


def test_check_array_float():
    out = check_array_float([[1, 2], [3, 4]], "a", ndim=2)
    assert out.dtype == np.float64 and out.shape == (2, 2)
    arr = np.ones(3)
    assert check_array_float(arr, "a") is arr  # no copy when possible
    assert check_array_float(np.ones(3, dtype=np.float32), "a", dtype=None).dtype == np.float32
    with pytest.raises(ValueError, match="a must be 2-dimensional"):
        check_array_float(np.ones(3), "a", ndim=2)
    with pytest.raises(ValueError, match="a must have at least 1"):
        check_array_float(1.0, "a", min_ndim=1)
    with pytest.raises(ValueError, match="a must contain only finite"):
        check_array_float([1.0, np.nan], "a")
    with pytest.raises(TypeError, match="a must be real-valued"):
        check_array_float(np.ones(2, dtype=complex), "a")
    with pytest.raises(TypeError, match="a must be an array of real numbers"):
        check_array_float(["x", "y"], "a")
    with pytest.raises(TypeError, match="a must be an array of real numbers"):
        check_array_float(np.array([1, None], dtype=object), "a")


def test_check_random_generator():
    a = check_random_generator(3).normal(size=4)
    assert_array_equal(a, np.random.default_rng(3).normal(size=4))
    assert_array_equal(check_random_generator(np.int64(3)).normal(size=4), a)
    gen = np.random.default_rng(0)
    assert check_random_generator(gen) is gen
    assert isinstance(check_random_generator(None), np.random.Generator)
    r1 = check_random_generator(np.random.RandomState(5)).normal(size=3)
    r2 = check_random_generator(np.random.RandomState(5)).normal(size=3)
    assert_array_equal(r1, r2)
    assert isinstance(check_random_generator(np.random.SeedSequence(1)), np.random.Generator)
    with pytest.raises(ValueError, match="random_state"):
        check_random_generator(-1)
    with pytest.raises(TypeError, match="random_state"):
        check_random_generator("0")
    with pytest.raises(TypeError, match="random_state"):
        check_random_generator(1.5)
