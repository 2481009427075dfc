"""Tests of mtdlearn.data.measurements and mtdlearn.data.patches: tiling,
measurement validation, the patch source and chunk sizing."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_array_equal

from mtdlearn.data.measurements import check_measurements, extract_patches, patch_grid_shape, tile
from mtdlearn.data.patches import PatchData, as_patch_source, chunk_rows, resolve_working_memory

L = 5
sizes = st.integers(1, 7)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------ tiling
@given(L=sizes, data=st.data())
def test_extract_patches_row_major_and_cropped(L, data):
    n1 = data.draw(st.integers(L, 4 * L + L - 1))
    n2 = data.draw(st.integers(L, 4 * L + L - 1))
    M = np.arange(n1 * n2, dtype=np.float64).reshape(n1, n2)
    patches = extract_patches(M, L)
    nr, nc = n1 // L, n2 // L
    assert patch_grid_shape(M.shape, L) == (nr, nc)
    assert patches.shape == (nr * nc, L, L)
    for m in range(nr * nc):
        r, c = divmod(m, nc)
        assert_array_equal(patches[m], M[r * L:(r + 1) * L, c * L:(c + 1) * L])
    # the margins beyond multiples of L are dropped: every kept pixel lies in the crop
    assert patches.max() == M[nr * L - 1, nc * L - 1]


def test_extract_patches_example_and_stacks():
    M = np.arange(36.0).reshape(6, 6)
    assert_array_equal(extract_patches(M, 3)[1], [[3, 4, 5], [9, 10, 11], [15, 16, 17]])
    stack = np.random.default_rng(0).normal(size=(2, 3, 11, 13))
    patches = extract_patches(stack, 5)
    assert patches.shape == (2, 3, 4, 5, 5)
    for a in range(2):
        for b in range(3):
            assert_array_equal(patches[a, b], extract_patches(stack[a, b], 5))
    assert extract_patches(M.tolist(), 2).shape == (9, 2, 2)


def test_extract_patches_errors():
    with pytest.raises(ValueError, match="measurement"):
        extract_patches(np.zeros((4, 10)), 5)
    with pytest.raises(ValueError, match="measurement"):
        extract_patches(np.zeros(25), 5)
    with pytest.raises(ValueError, match="measurement"):
        extract_patches(np.full((10, 10), np.nan), 5)
    with pytest.raises(ValueError, match="image_size"):
        extract_patches(np.zeros((10, 10)), 0)


def test_tile_is_a_view_in_patch_order():
    M = np.arange(7 * 11, dtype=np.float64).reshape(7, 11)
    t = tile(M, 3)
    assert t.shape == (2, 3, 3, 3)
    assert np.shares_memory(t, M)
    assert_array_equal(t.reshape(-1, 3, 3), extract_patches(M, 3))


# ------------------------------------------------------------ patch source
@settings(max_examples=25, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(5, 23), st.integers(5, 23)), min_size=1,
                       max_size=3),
       start_frac=st.floats(0, 1), length=st.integers(1, 40))
def test_patch_data_matches_extract_patches(shapes, start_frac, length):
    rng = np.random.default_rng(0)
    Ms = [rng.standard_normal(s) for s in shapes]
    data = PatchData(Ms, L)
    ref = np.concatenate([extract_patches(M, L).reshape(-1, L * L) for M in Ms])
    assert data.n_patches == len(ref)
    start = int(start_frac * (len(ref) - 1))
    stop = min(len(ref), start + length)
    np.testing.assert_array_equal(data.get(start, stop), ref[start:stop])
    meas, r, c = data.locate(np.arange(len(ref)))
    for m in np.unique(meas):
        sel = meas == m
        M = Ms[m]
        np.testing.assert_array_equal(
            np.stack([M[i:i + L, j:j + L].ravel() for i, j in zip(r[sel], c[sel])]), ref[sel])


def test_memoize_computes_once_and_ignores_n_jobs():
    data = PatchData([np.ones((10, 10))], 5)
    calls = []

    def total(measurements, scale, n_jobs=None):
        calls.append(n_jobs)
        return scale * sum(float(M.sum()) for M in measurements)

    assert data.memoize(total, 2.0) == 200.0
    assert data.memoize(total, 2.0, n_jobs=2) == 200.0       # same key: not recomputed
    assert data.memoize(total, 3.0) == 300.0                 # another key
    assert calls == [None, None]
    # another patch side shares the memo of the same measurements
    assert data.with_image_size(3).memoize(total, 2.0) == 200.0
    assert len(calls) == 2


def test_as_patch_source_reuses_and_checks():
    data = PatchData([np.ones((10, 10))], 5)
    assert as_patch_source(data, 5) is data
    assert as_patch_source(data, 3).n_patches == 9
    with pytest.raises(ValueError, match=r"X\[0\] of shape \(10, 10\) is smaller"):
        as_patch_source(data, 11)
    assert as_patch_source(np.arange(200.0).reshape(2, 10, 10), 5).n_patches == 8


# ------------------------------------------------------------------ chunks
def test_chunk_rows_follows_the_budget():
    assert chunk_rows(2**20, 100, working_memory=8) == 8
    assert chunk_rows(2**10, 100, working_memory=8) == 100      # the cap
    assert chunk_rows(2**21, 100, working_memory=1) == 1        # below one row: 1
    with pytest.raises(ValueError, match="working_memory=1.0 MiB is too small for one patch"):
        chunk_rows(2**21, 100, working_memory=1, unit="patch")


def test_working_memory_default_is_scikit_learns():
    import sklearn

    assert resolve_working_memory(None) == sklearn.get_config()["working_memory"]
    with sklearn.config_context(working_memory=16):
        assert resolve_working_memory(None) == 16
    for bad in (0, -1.0, np.nan):
        with pytest.raises(ValueError, match="working_memory"):
            resolve_working_memory(bad)


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

    with pytest.raises(TypeError, match="sparse input is not supported"):
        check_measurements(scipy.sparse.random(20, 20, density=0.1, format="csr"), 5)


def test_check_measurements_speaks_scikit_learns_language():
    # its estimator checks look for these phrases; our own stay in front
    with pytest.raises(ValueError, match=r"X must contain only finite values \(Input "
                                         "contains NaN\\)"):
        check_measurements(np.full((6, 6), np.nan), 5)
    with pytest.raises(ValueError, match=r"\(Input contains infinity\)"):
        check_measurements(np.full((6, 6), -np.inf), 5)
    for exc in (TypeError, ValueError):  # complex data is both
        with pytest.raises(exc, match=r"X must be real-valued.*Complex data not supported"):
            check_measurements(np.ones((6, 6), dtype=complex), 5)
    with pytest.raises(ValueError, match=r"smaller than one 5x5 patch: 1 rows, i\.e\. "
                                         r"1 sample\(s\) \(shape=\(1, 9\)\)"):
        check_measurements(np.ones((1, 9)), 5)
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(9, 0\)\) while a "
                                         "minimum of 5 is required"):
        check_measurements(np.ones((9, 0)), 5)
    with pytest.raises(ValueError, match="shape \\(3,\\). Reshape your data"):
        check_measurements(np.ones(3), 5)


def test_check_measurements_object_arrays_of_numbers():
    M = np.arange(36.0).reshape(6, 6)
    out = check_measurements(M.astype(object), 5)[0]
    assert out.dtype == np.float64
    assert_array_equal(out, M)
    bad = M.astype(object)
    bad[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="X must be numeric, got dtype object holding a "
                                        "non-number: .*argument must be"):
        check_measurements(bad, 5)


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
    from mtdlearn.data.measurements import _scan_values

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
