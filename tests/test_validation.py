"""Tests of the argument validators: every error names the argument, and
nothing is silently clipped or coerced."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mtdlearn._validation import (check_array_float, check_int, check_measurements,
                                  check_random_generator, check_real)


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


# ------------------------------------------------------------ measurements
def test_check_measurements_arrays():
    M = np.random.default_rng(0).normal(size=(20, 30))
    out = check_measurements(M, 5)
    assert len(out) == 1 and out[0] is M
    stack = np.stack([M, 2 * M, 3 * M])
    out = check_measurements(stack, 5)
    assert len(out) == 3
    for i in range(3):
        assert_array_equal(out[i], stack[i])
    # sequences may hold measurements of different sizes
    out = check_measurements([M, M[:12, :7], M.astype(np.float32)], 5)
    assert [o.shape for o in out] == [(20, 30), (12, 7), (20, 30)]
    assert len(check_measurements((M,), 5)) == 1
    # integers are numbers too
    ints = np.arange(36, dtype=np.int16).reshape(6, 6)
    assert check_measurements(ints, 5)[0].shape == (6, 6)


def test_check_measurements_npy_path_read_only(tmp_path):
    M = np.random.default_rng(1).normal(size=(25, 25))
    path = tmp_path / "measurement.npy"
    np.save(path, M)
    before = _digest(path)
    for X in (path, str(path), [path, M], [str(path)]):
        out = check_measurements(X, 5)
        assert_array_equal(out[0], M)
        assert not out[0].flags.writeable
        with pytest.raises(ValueError):
            out[0][0, 0] = 1.0
        del out
    assert _digest(path) == before


@pytest.mark.parametrize("X, exc, match", [
    (np.full((10, 10), np.nan), ValueError, "X must contain only finite"),
    ([np.eye(10), np.full((10, 10), np.inf)], ValueError,
     r"X\[1\] must contain only finite"),
    (np.ones(10), ValueError, "X must be one measurement"),
    (np.ones((2, 2, 10, 10)), ValueError, "X must be one measurement"),
    ([np.ones((3, 10, 10))], ValueError, "X must be a 2-D measurement"),
    ([np.eye(10), np.ones(10)], ValueError, r"X\[1\] must be a 2-D measurement"),
    (np.ones((10, 10), dtype=complex), TypeError, "X must be real-valued"),
    ([np.array([["a", "b"], ["c", "d"]])], TypeError, "X must be numeric"),
    (np.ones((4, 10)), ValueError, "smaller than one 5x5 patch"),
    ([np.eye(10), np.ones((10, 4))], ValueError, r"X\[1\] of shape \(10, 4\) is smaller"),
    ([], ValueError, "X holds no measurement"),
    (3.0, TypeError, "X must be an array"),
    ({"a": 1}, TypeError, "X must be an array"),
])
def test_check_measurements_rejects(X, exc, match):
    with pytest.raises(exc, match=match):
        check_measurements(X, 5)


def test_check_measurements_name_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="measurements must contain only finite"):
        check_measurements(np.full((6, 6), np.nan), 5, name="measurements")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        check_measurements(tmp_path / "missing.npy", 5)


def test_sparse_input_is_rejected_explicitly():
    import scipy.sparse

    from mtdlearn._validation import check_measurements

    with pytest.raises(TypeError, match="sparse input is not supported"):
        check_measurements(scipy.sparse.random(20, 20, density=0.1, format="csr"), 5)


def test_check_measurements_names_the_file(tmp_path):
    """Errors about the values of a file name the file; its header is checked
    when it is opened, its values in the one blockwise pass."""
    M = np.random.default_rng(2).normal(size=(12, 12))
    bad = M.copy()
    bad[7, 3] = np.nan
    np.save(tmp_path / "good.npy", M)
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "stack.npy", np.stack([M, bad]))
    np.save(tmp_path / "vector.npy", np.ones(30))
    with pytest.raises(ValueError, match=r"X\[1\] \(.*nan\.npy\) must contain only finite"):
        check_measurements([tmp_path / "good.npy", tmp_path / "nan.npy"], 5)
    with pytest.raises(ValueError, match=r"X \(.*stack\.npy, measurement 1\) must contain"):
        check_measurements(tmp_path / "stack.npy", 5)
    with pytest.raises(ValueError, match=r"vector\.npy holds an array of shape \(30,\); "
                                         r"expected a 2-D measurement or a 3-D stack"):
        check_measurements([str(tmp_path / "vector.npy")], 5)
    # a stack in one file gives one measurement per slice
    np.save(tmp_path / "stack.npy", np.stack([M, 2 * M]))
    out = check_measurements([tmp_path / "stack.npy", M], 5)
    assert len(out) == 3 and not out[0].flags.writeable
    assert_array_equal(out[1], 2 * M)


# ----------------------------------------------------------- constant input
@pytest.mark.parametrize("X, match", [
    (np.zeros((10, 10)), r"^X is constant \(all values equal 0\.0\): it holds no signal or "
                         r"noise to fit$"),
    (np.full((10, 12), -2.5), r"^X is constant \(all values equal -2\.5\)"),
    (np.full((10, 10), 7, dtype=np.uint8), r"^X is constant \(all values equal 7\)"),
    (np.full((10, 10), 0.5, dtype=np.float32), r"^X is constant \(all values equal 0\.5\)"),
    (np.stack([np.eye(10), np.ones((10, 10))]), r"^X\[1\] is constant \(all values equal 1\.0"),
    ([np.eye(10), np.eye(10), np.zeros((8, 8))], r"^X\[2\] is constant"),
    (np.zeros((10, 10)) * -1.0, r"is constant"),  # -0.0 == 0.0
])
def test_constant_measurement_rejected(X, match):
    with pytest.raises(ValueError, match=match):
        check_measurements(X, 5)


def test_constant_measurement_file_named(tmp_path):
    path = tmp_path / "blank.npy"
    np.save(path, np.zeros((12, 12), dtype=np.float32))
    before = _digest(path)
    with pytest.raises(ValueError, match=r"^X \(.*blank\.npy\) is constant \(all values "
                                         r"equal 0\.0\)"):
        check_measurements(path, 5)
    assert _digest(path) == before


def test_nearly_constant_measurements_accepted():
    for M in (np.zeros((10, 10)), np.full((10, 10), 3.0)):
        for where in [(0, 0), (9, 9), (5, 0)]:
            X = M.copy()
            X[where] += 1e-300 if M[0, 0] == 0 else 1e-15
            assert check_measurements(X, 5)[0] is X


def test_scan_values_is_blockwise():
    """One pass in row blocks: a difference or a NaN in the last block is seen,
    a NaN is seen after the constant check has stopped, and no temporary
    exceeds a block."""
    from mtdlearn._validation import _scan_values

    row = 8 * 64  # bytes per row of a (n, 64) float64 array
    X = np.zeros((50, 64))
    assert _scan_values(X, block_bytes=3 * row) == (True, 0.0)
    X[-1, -1] = 1.0
    assert _scan_values(X, block_bytes=3 * row) == (True, None)
    X[0, 1] = 2.0                     # differs in the first block ...
    X[-1, 0] = np.nan                 # ... and a NaN in the last one
    assert _scan_values(X, block_bytes=3 * row) == (False, None)
    ints = np.zeros((50, 64), dtype=np.int64)
    assert _scan_values(ints, block_bytes=row) == (True, 0)
    ints[49, 63] = 1
    assert _scan_values(ints, block_bytes=row) == (True, None)


def test_scan_values_memory_of_a_large_memmap(tmp_path):
    """A 4000 x 4000 memory-mapped constant measurement (128 MB) is checked
    with no full-size temporary: a full-size boolean mask would be 16 MB, the
    masks of one 16 MB block of data are 2 MB each."""
    import tracemalloc

    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(4000, 4000))
    big[:] = 1.5
    big.flush()
    del big
    X = np.load(path, mmap_mode="r")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"is constant \(all values equal 1\.5\)"):
            check_measurements(X, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**23
    del X
