"""Tests of reading measurements from files (read-only)."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mtdlearn.io import read_measurement


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def measurement():
    return np.random.default_rng(0).normal(size=(30, 40))


@pytest.mark.parametrize("as_str", [False, True])
def test_read_npy_memory_mapped_read_only(tmp_path, measurement, as_str):
    path = tmp_path / "m.npy"
    np.save(path, measurement)
    before = _digest(path)
    out = read_measurement(str(path) if as_str else path)
    assert isinstance(out, np.memmap)
    assert not out.flags.writeable
    assert_array_equal(out, measurement)
    with pytest.raises(ValueError):
        out[0, 0] = 0.0
    del out
    assert _digest(path) == before


def test_read_npy_stack_and_dtype(tmp_path):
    stack = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    path = tmp_path / "stack.NPY"  # suffix matched case-insensitively
    with open(path, "wb") as fh:  # np.save(path) would append ".npy"
        np.save(fh, stack)
    out = read_measurement(path)
    assert out.shape == (2, 6, 6) and out.dtype == np.float32
    assert_array_equal(out, stack)


def test_read_mrc(tmp_path, measurement):
    mrcfile = pytest.importorskip("mrcfile")
    data = measurement.astype(np.float32)
    path = tmp_path / "micrograph.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    before = _digest(path)
    out = read_measurement(path)
    assert out.shape == (30, 40) and out.dtype == np.float64
    assert_array_equal(out, data.astype(np.float64))
    assert _digest(path) == before
    # a 3-D file with one section is squeezed to 2-D
    path3 = tmp_path / "one_section.mrc"
    with mrcfile.new(path3) as mrc:
        mrc.set_data(data[None])
    assert read_measurement(path3).shape == (30, 40)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="measurement file not found.*nope.npy"):
        read_measurement(tmp_path / "nope.npy")
    # a directory is not a measurement file
    with pytest.raises(FileNotFoundError, match="not found"):
        read_measurement(tmp_path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("1 2 3")
    match = r"unsupported measurement file type '\.txt'.*\.npy or \.mrc"
    with pytest.raises(ValueError, match=match):
        read_measurement(path)


def test_corrupt_files(tmp_path):
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="cannot read .*bad.npy as a .npy array"):
        read_measurement(bad)
    # object arrays need pickle, which is never allowed
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read"):
        read_measurement(obj)
    pytest.importorskip("mrcfile")
    bad_mrc = tmp_path / "bad.mrc"
    bad_mrc.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="cannot read .*bad.mrc as an MRC file"):
        read_measurement(bad_mrc)
