"""Tests of reading measurements from files (read-only)."""

import gc
import hashlib
import io
import os
import pathlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mtdlearn.data.io import read_measurement, read_micrographs
from mtdlearn.data.star import (MicrographCTF, picks_table, read_micrograph_ctfs, star_paths,
                                 write_micrograph_ctfs, write_star,
                                 write_star_per_micrograph)
from mtdlearn.imaging.ctf import CTF


def _state(path):
    """Bytes digest and modification time: both must survive a read."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture
def measurement():
    return np.random.default_rng(0).normal(size=(30, 40))


@pytest.mark.parametrize("as_str", [False, True])
def test_read_npy_memory_mapped_read_only(tmp_path, measurement, as_str):
    path = tmp_path / "m.npy"
    np.save(path, measurement)
    before = _state(path)
    out = read_measurement(str(path) if as_str else path)
    assert isinstance(out, np.memmap)
    assert not out.flags.writeable
    assert_array_equal(out, measurement)
    with pytest.raises(ValueError):
        out[0, 0] = 0.0
    del out
    gc.collect()
    assert _state(path) == before


def test_read_npy_stack_and_dtype(tmp_path):
    stack = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    path = tmp_path / "stack.NPY"  # suffix matched case-insensitively
    with open(path, "wb") as fh:  # np.save(path) would append ".npy"
        np.save(fh, stack)
    out = read_measurement(path)
    assert out.shape == (2, 6, 6) and out.dtype == np.float32
    assert_array_equal(out, stack)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float16])
def test_read_mrc_memory_mapped_native_dtype(tmp_path, measurement, dtype):
    mrcfile = pytest.importorskip("mrcfile")
    data = (100 * measurement).astype(dtype)
    path = tmp_path / "micrograph.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
    before = _state(path)
    out = read_measurement(path)
    # the file's own dtype, memory-mapped, read-only: converted chunk by chunk
    # downstream, never read whole into float64
    assert isinstance(out, np.memmap)
    assert out.shape == (30, 40) and out.dtype == dtype
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0, 0] = 0
    # mrcfile closed its MrcFile (and file object) before read_measurement
    # returned; the numpy memmap holds its own mmap (and descriptor), so the
    # array stays valid after a garbage collection
    gc.collect()
    assert_array_equal(out, data)
    assert float(np.asarray(out, dtype=np.float64).sum()) == pytest.approx(
        float(data.astype(np.float64).sum()))
    del out
    gc.collect()
    assert _state(path) == before


def test_read_mrc_squeezes_one_section_and_keeps_stacks(tmp_path, measurement):
    mrcfile = pytest.importorskip("mrcfile")
    data = measurement.astype(np.float32)
    one = tmp_path / "one_section.mrc"
    with mrcfile.new(one) as mrc:
        mrc.set_data(data[None])
    out = read_measurement(one)
    assert out.shape == (30, 40) and isinstance(out, np.memmap)
    stack = tmp_path / "stack.mrcs"
    with mrcfile.new(stack) as mrc:
        mrc.set_data(np.stack([data, 2 * data]))
    assert read_measurement(stack).shape == (2, 30, 40)


def test_read_mrc_with_header_problems_warns_and_reads(tmp_path, measurement):
    """permissive=True: a readable data block behind a non-conforming header
    is read, with one warning naming the file."""
    mrcfile = pytest.importorskip("mrcfile")
    path = tmp_path / "extra.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(measurement.astype(np.float32))
    with open(path, "ab") as fh:
        fh.write(b"\0" * 100)
    before = _state(path)
    with pytest.warns(RuntimeWarning, match=r"extra\.mrc: MRC header problems.*100 bytes"):
        out = read_measurement(path)
    assert_array_equal(out, measurement.astype(np.float32))
    del out
    assert _state(path) == before


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


GOOD = np.random.default_rng(1).normal(size=(30, 30))
NAN = GOOD.copy()
NAN[3, 4] = np.nan
INF_STACK = np.stack([GOOD, GOOD])
INF_STACK[1, 0, 0] = -np.inf

# (file name, bytes, regex the message must match after the path)
BAD_NPY = [
    ("empty.npy", b"", r"the file is empty"),
    ("header.npy", _npy_bytes(GOOD)[:20], r"expected a complete file"),
    ("data.npy", _npy_bytes(GOOD)[:-100], r"expected a complete file"),
    ("junk.npy", b"this is not a numpy file" * 10, r"no NumPy header"),
    ("text.npy", b"1 2 3\n4 5 6\n", r"no NumPy header"),
    ("record.npy", _npy_bytes(np.zeros((4, 4), dtype=[("a", "f8"), ("b", "i4")])),
     r"dtype .*expected a 2-D measurement or a 3-D stack of real numbers"),
    ("strings.npy", _npy_bytes(np.array([["a", "b"], ["c", "d"]])), r"dtype <U1"),
    ("bool.npy", _npy_bytes(np.ones((10, 10), dtype=bool)), r"dtype bool"),
    ("complex.npy", _npy_bytes(np.ones((10, 10), dtype=complex)), r"dtype complex128"),
    ("scalar.npy", _npy_bytes(np.float64(1.0)), r"shape \(\); expected a 2-D"),
    ("vector.npy", _npy_bytes(np.ones(100)), r"shape \(100,\); expected a 2-D"),
    ("four_d.npy", _npy_bytes(np.ones((2, 2, 10, 10))), r"shape \(2, 2, 10, 10\)"),
    ("no_rows.npy", _npy_bytes(np.ones((0, 10))), r"empty array of shape \(0, 10\)"),
    ("no_slices.npy", _npy_bytes(np.ones((0, 10, 10))), r"empty array"),
    ("nan.npy", _npy_bytes(NAN), r"NaN or infinite values; expected .* only finite"),
    ("inf_stack.npy", _npy_bytes(INF_STACK), r"NaN or infinite values"),
]


@pytest.mark.parametrize("name, content, match", BAD_NPY, ids=[c[0] for c in BAD_NPY])
def test_bad_npy_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    before = _state(path)
    with pytest.raises(ValueError, match=f"{name}.*{match}"):
        read_measurement(path)
    gc.collect()
    assert _state(path) == before
    assert os.listdir(tmp_path) == [name]


class _Touch:
    """Unpickling this object creates a file: proof that nothing is unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_pickled_object_array_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[_Touch(marker)]], dtype=object), allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"obj\.npy holds pickled Python objects \(dtype "
                                         r"object\), which are never loaded; expected a 2-D"):
        read_measurement(path)
    assert not marker.exists()


def _mrc_bytes(tmp_path, data):
    mrcfile = pytest.importorskip("mrcfile")
    path = tmp_path / "_template.mrc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about NaN in header statistics
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
    content = path.read_bytes()
    path.unlink()
    return content


@pytest.mark.parametrize("name, make, match", [
    ("empty.mrc", lambda d: b"", r"cannot read .* as an MRC file \(Couldn't read enough"),
    ("tiny.mrc", lambda d: b"\0" * 10, r"cannot read .* as an MRC file"),
    ("zeros.mrc", lambda d: b"\0" * 2000, r"empty array .*Map ID string not found"),
    ("truncated.mrc", lambda d: _mrc_bytes(d, GOOD.astype(np.float32))[:-500],
     r"cannot read .* as an MRC file \(Error opening memmap\)"),
    ("junk.mrc", lambda d: np.random.default_rng(2).bytes(3000), r"cannot read .* MRC"),
    ("complex.mrc", lambda d: _mrc_bytes(d, np.ones((10, 10), dtype=np.complex64)),
     r"complex MRC data"),
    ("nan.mrc", lambda d: _mrc_bytes(d, NAN.astype(np.float32)), r"NaN or infinite"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".mrc") else "")
def test_bad_mrc_files(tmp_path, name, make, match):
    pytest.importorskip("mrcfile")
    content = make(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    before = _state(path)
    with pytest.raises(ValueError, match=match) as info:
        read_measurement(path)
    assert name in str(info.value) and "expected" in str(info.value)
    gc.collect()
    assert _state(path) == before
    assert os.listdir(tmp_path) == [name]


# -- lazy micrographs and picks for cryo-EM tools ---------------------------
def _detections(rows):
    return np.array(rows, dtype=[("measurement", np.int64), ("row", np.int64),
                                 ("col", np.int64), ("angle", np.float64),
                                 ("probability", np.float64)])


def test_read_micrographs_glob_list_and_stacks(tmp_path):
    pytest.importorskip("dask.array")
    mrcfile = pytest.importorskip("mrcfile")
    np.save(tmp_path / "b.npy", np.arange(12.0).reshape(3, 4))
    mrcfile.new(str(tmp_path / "a.mrc"), np.ones((2, 5, 6), np.float32)).close()
    mics = read_micrographs(str(tmp_path / "*"))
    assert mics.names == ["a.mrc@0", "a.mrc@1", "b.npy"]
    assert [m.shape for m in mics] == [(5, 6), (5, 6), (3, 4)]
    assert_array_equal(mics[2].compute(scheduler="synchronous"),
                       np.arange(12.0).reshape(3, 4))
    assert read_micrographs([tmp_path / "b.npy"]).names == ["b.npy"]
    # the keys name the file: the same file gives the same task
    assert mics[2].name == read_micrographs(tmp_path / "b.npy")[0].name
    with pytest.raises(FileNotFoundError, match="no file matches"):
        read_micrographs(str(tmp_path / "*.nothing"))


def test_picks_table_conventions():
    det = _detections([(1, 10, 20, np.pi / 2, 0.7), (0, 3, 4, 0.0, 0.5),
                       (1, 10, 20, np.pi / 2, 0.9)])
    picks = picks_table(det, 5, ["a.mrc", "b.mrc"])
    # one row per occurrence (the copy seen by two patches once, its best probability)
    assert picks["micrograph"].tolist() == [0, 1]
    assert picks["rlnMicrographName"].tolist() == ["a.mrc", "b.mrc"]
    assert picks["rlnCoordinateX"].tolist() == [6.0, 22.0]   # col + (L-1)/2
    assert picks["rlnCoordinateY"].tolist() == [5.0, 12.0]   # row + (L-1)/2
    assert picks["rlnAnglePsi"].tolist() == [0.0, 270.0]     # -phi in degrees, mod 360
    assert picks["rlnAutopickFigureOfMerit"].tolist() == [0.5, 0.9]
    assert picks_table(det, 5)["rlnMicrographName"].tolist() == ["micrograph_0",
                                                                 "micrograph_1"]
    with pytest.raises(ValueError, match="micrograph_names has 1 names"):
        picks_table(det, 5, ["a.mrc"])


def test_write_star_round_trip_and_refuses_to_overwrite(tmp_path):
    starfile = pytest.importorskip("starfile")
    rng = np.random.default_rng(0)
    det = _detections([(i % 3, r, c, a, p) for i, (r, c, a, p) in enumerate(zip(
        rng.integers(0, 500, 40), rng.integers(0, 500, 40),
        rng.uniform(0, 2 * np.pi, 40), rng.uniform(0, 1, 40)))])
    picks = picks_table(det, 7, ["x.mrc", "y.mrc", "z.mrc"])
    path = tmp_path / "picks.star"
    write_star(picks, path)
    back = starfile.read(path)
    assert list(back.columns) == ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY",
                                  "rlnAnglePsi", "rlnAutopickFigureOfMerit"]
    assert back["rlnMicrographName"].tolist() == picks["rlnMicrographName"].tolist()
    for column in back.columns[1:]:
        assert_array_equal(back[column].to_numpy(dtype=float), picks[column].to_numpy())
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_star(picks, path)
    assert path.read_bytes() == before
    write_star(picks.iloc[:3], path, micrograph_names=["p", "q", "r"], overwrite=True)
    assert starfile.read(path)["rlnMicrographName"].tolist() == [
        ["p", "q", "r"][i] for i in picks["micrograph"].iloc[:3]]
    assert sorted(os.listdir(tmp_path)) == ["picks.star"]  # no temporary left behind


def test_write_star_per_micrograph_round_trip(tmp_path):
    """One finished file per micrograph; together they are the combined table."""
    starfile = pytest.importorskip("starfile")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    det = _detections([(i % 2, r, c, a, p) for i, (r, c, a, p) in enumerate(zip(
        rng.integers(0, 500, 30), rng.integers(0, 500, 30),
        rng.uniform(0, 2 * np.pi, 30), rng.uniform(0, 1, 30)))])
    names = ["x.mrc", "y.mrc", "s.mrcs@3"]   # the last holds no pick
    consumed = []

    def per_micrograph():
        for i in range(3):
            consumed.append(i)
            # the previous micrograph's file is finished when the next one is asked for
            assert sorted(os.listdir(tmp_path / "out")) == [
                p.name for p in star_paths(names[:i], tmp_path / "out")]
            yield i, det[det["measurement"] == i]

    paths = write_star_per_micrograph(per_micrograph(), 7, tmp_path / "out", names)
    assert [p.name for p in paths] == ["x_picks.star", "y_picks.star", "s_3_picks.star"]
    back = [starfile.read(p) for p in paths]
    assert len(back[2]) == 0 and list(back[2].columns) == list(back[0].columns)
    combined = picks_table(det, 7, names)
    together = pd.concat(back[:2], ignore_index=True)
    assert together["rlnMicrographName"].tolist() == combined["rlnMicrographName"].tolist()
    for column in together.columns[1:]:
        assert_array_equal(together[column].to_numpy(dtype=float),
                           combined[column].to_numpy())
    # existing files: refused before anything is consumed; replaced with overwrite
    before = [p.read_bytes() for p in paths]
    consumed.clear()
    with pytest.raises(FileExistsError, match="x_picks.star exists .*overwrite=True"):
        write_star_per_micrograph(per_micrograph(), 7, tmp_path / "out", names)
    assert consumed == [] and [p.read_bytes() for p in paths] == before
    (tmp_path / "out" / "x_picks.star").unlink()
    (tmp_path / "out" / "y_picks.star").unlink()
    (tmp_path / "out" / "s_3_picks.star").unlink()
    write_star_per_micrograph(iter([(1, det[det["measurement"] == 1])]), 7,
                              tmp_path / "out", names)
    write_star_per_micrograph(iter([(1, det[:0])]), 7, tmp_path / "out", names,
                              overwrite=True)
    assert len(starfile.read(tmp_path / "out" / "y_picks.star")) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["y_picks.star"]  # no temporary left
    with pytest.raises(ValueError, match="'a.mrc' and 'a.npy' would both be written"):
        star_paths(["a.mrc", "a.npy"], tmp_path)
    with pytest.raises(ValueError, match="micrograph_names has 3 names"):
        write_star_per_micrograph(iter([(3, det[:0])]), 7, tmp_path / "out", names,
                                  overwrite=True)


# ---------------------------------------------------------------------------
# micrographs' CTFs: RELION 3.1+ micrograph STAR files
#: A micrographs_ctf.star as RELION 3.1's CtfFind job writes it (two optics
#: groups, columns the reader does not use, a version comment).
RELION_CTF_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMtfFileName #3
_rlnMicrographOriginalPixelSize #4
_rlnVoltage #5
_rlnSphericalAberration #6
_rlnAmplitudeContrast #7
_rlnMicrographPixelSize #8
opticsGroup1            1 mtf_k2_200kV.star     0.885000   200.000000     1.400000     0.100000     0.885000
opticsGroup2            2 mtf_k2_300kV.star     0.530000   300.000000     2.700000     0.070000     1.060000


# version 30001

data_micrographs

loop_
_rlnCtfPowerSpectrum #1
_rlnMicrographName #2
_rlnMicrographMetadata #3
_rlnOpticsGroup #4
_rlnAccumMotionTotal #5
_rlnCtfImage #6
_rlnDefocusU #7
_rlnDefocusV #8
_rlnCtfAstigmatism #9
_rlnDefocusAngle #10
_rlnCtfFigureOfMerit #11
_rlnCtfMaxResolution #12
MotionCorr/job002/Movies/20170629_00021_frameImage_PS.mrc MotionCorr/job002/Movies/20170629_00021_frameImage.mrc MotionCorr/job002/Movies/20170629_00021_frameImage.star            1    16.420495 CtfFind/job003/Movies/20170629_00021_frameImage.ctf:mrc 10864.146484 10575.793945   288.352539    77.995003     0.131144     4.809192
MotionCorr/job002/Movies/20170629_00022_frameImage_PS.mrc MotionCorr/job002/Movies/20170629_00022_frameImage.mrc MotionCorr/job002/Movies/20170629_00022_frameImage.star            2    19.733978 CtfFind/job003/Movies/20170629_00022_frameImage.ctf:mrc 9681.333008  9387.520508   293.812500   -81.721298     0.110213     4.191011
"""


def _ctfs_for_round_trip():
    return [
        CTF(10864.146484, 10575.793945, 77.995003, voltage=200.0, spherical_aberration=1.4,
            pixel_size=0.885),
        CTF(1.0 / 3.0 * 3e4, 0.1 + 0.2, -81.721298, amplitude_contrast=0.07, pixel_size=1.06,
            phase_shift=np.pi, b_factor=12.345678901234567),
        CTF(20000.0, voltage=200.0, spherical_aberration=1.4, pixel_size=0.885),
        CTF(15000.0, 14000.0, 1e-300, voltage=300.0, amplitude_contrast=0.999999,
            pixel_size=0.885),
    ]


def test_micrograph_ctfs_round_trip(tmp_path):
    starfile = pytest.importorskip("starfile")
    names = ["MotionCorr/job002/a.mrc", "b.mrc", "0001", "stack.mrcs@3"]
    ctfs = _ctfs_for_round_trip()
    path = write_micrograph_ctfs(tmp_path / "micrographs_ctf.star", names, ctfs)
    back = read_micrograph_ctfs(path)
    # 17 significant digits give every float64 back exactly: equality, no tolerance
    assert back == list(zip(names, ctfs)) and all(type(b) is MicrographCTF for b in back)
    assert back[2].name == "0001"  # a numeric-looking name stays a string
    blocks = starfile.read(path, always_dict=True)
    assert list(blocks) == ["optics", "micrographs"]
    # one optics group per (voltage, Cs, A, pixel size), numbered by first appearance
    assert blocks["optics"]["rlnOpticsGroup"].tolist() == [1, 2, 3]
    assert blocks["micrographs"]["rlnOpticsGroup"].tolist() == [1, 2, 1, 3]
    assert_array_equal(blocks["micrographs"]["rlnCtfAstigmatism"],
                       [abs(c.defocus_u - c.defocus_v) for c in ctfs])
    # an existing file is refused, replaced with overwrite=True, no temporary left
    before = _state(path)
    with pytest.raises(FileExistsError, match="micrographs_ctf.star exists"):
        write_micrograph_ctfs(path, names[:1], ctfs[:1])
    assert _state(path) == before
    write_micrograph_ctfs(path, names[:1], ctfs[:1], overwrite=True)
    assert read_micrograph_ctfs(path) == [(names[0], ctfs[0])]
    assert "rlnPhaseShift" not in starfile.read(path, always_dict=True)["micrographs"]
    assert sorted(os.listdir(tmp_path)) == ["micrographs_ctf.star"]
    # no micrographs at all
    empty = write_micrograph_ctfs(tmp_path / "empty.star", [], [])
    assert read_micrograph_ctfs(empty) == []


def test_read_micrograph_ctfs_relion_file(tmp_path):
    pytest.importorskip("starfile")
    path = tmp_path / "micrographs_ctf.star"
    path.write_text(RELION_CTF_STAR)
    before = _state(path)
    read = read_micrograph_ctfs(path)
    assert _state(path) == before  # bytes and modification time: only read
    assert [name for name, _ in read] == [
        "MotionCorr/job002/Movies/20170629_00021_frameImage.mrc",
        "MotionCorr/job002/Movies/20170629_00022_frameImage.mrc"]
    assert read[0].ctf == CTF(10864.146484, 10575.793945, 77.995003, voltage=200.0,
                              spherical_aberration=1.4, amplitude_contrast=0.1,
                              pixel_size=0.885)
    assert read[1].ctf == CTF(9681.333008, 9387.520508, -81.721298, voltage=300.0,
                              spherical_aberration=2.7, amplitude_contrast=0.07,
                              pixel_size=1.06)
    # a phase plate: rlnPhaseShift in the optics group, overridden per micrograph
    with_plate = (RELION_CTF_STAR
                  .replace("_rlnMicrographPixelSize #8",
                           "_rlnMicrographPixelSize #8\n_rlnPhaseShift #9")
                  .replace("0.885000\n", "0.885000 45.0\n").replace("1.060000\n", "1.060000 0\n")
                  .replace("_rlnCtfMaxResolution #12",
                           "_rlnCtfMaxResolution #12\n_rlnPhaseShift #13")
                  .replace("4.809192\n", "4.809192 60.5\n").replace("4.191011\n", "4.191011 0\n"))
    path.write_text(with_plate)
    assert [c.phase_shift for _, c in read_micrograph_ctfs(path)] == [60.5, 0.0]
    path.write_text(with_plate.replace("_rlnPhaseShift #13", "_rlnCtfBfactor #13"))
    assert [(c.phase_shift, c.b_factor) for _, c in read_micrograph_ctfs(path)] == [
        (45.0, 60.5), (0.0, 0.0)]
    # a particle-style pixel size column is the fallback
    path.write_text(RELION_CTF_STAR.replace("rlnMicrographPixelSize", "rlnImagePixelSize"))
    assert [c.pixel_size for _, c in read_micrograph_ctfs(path)] == [0.885, 1.06]


def test_read_micrograph_ctfs_errors(tmp_path, monkeypatch):
    pytest.importorskip("starfile")
    path = tmp_path / "micrographs.star"
    # motion-corrected micrographs, no CTF estimation yet
    no_ctf = RELION_CTF_STAR
    for column in ("rlnDefocusU #7", "rlnDefocusV #8", "rlnDefocusAngle #10"):
        no_ctf = no_ctf.replace(f"_{column}\n", f"_rlnUnused{column.split()[1]}\n")
    path.write_text(no_ctf)
    before = _state(path)
    with pytest.raises(ValueError, match=r"micrographs.star has no CTF columns \(rlnDefocusU, "
                                         r"rlnDefocusV, rlnDefocusAngle\); run CTF estimation"):
        read_micrograph_ctfs(path)
    assert _state(path) == before
    # RELION < 3.1: one table, no optics
    path.write_text("data_\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n"
                    "_rlnDefocusAngle #4\n_rlnVoltage #5\na.mrc 10000 9000 10 300\n")
    with pytest.raises(ValueError, match="no data_micrographs table .*RELION < 3.1"):
        read_micrograph_ctfs(path)
    micrographs_only = RELION_CTF_STAR[RELION_CTF_STAR.index("# version 30001\n\ndata_micro"):]
    path.write_text(micrographs_only)
    with pytest.raises(ValueError, match="has no data_optics table: a STAR file of RELION < 3.1"):
        read_micrograph_ctfs(path)
    # optics without a pixel size, a micrograph in an undefined group, a bad value
    path.write_text(RELION_CTF_STAR.replace("rlnMicrographPixelSize", "rlnSomethingElse"))
    with pytest.raises(ValueError, match="data_optics has no pixel size"):
        read_micrograph_ctfs(path)
    path.write_text(RELION_CTF_STAR.replace("opticsGroup2            2", "opticsGroup2  5"))
    with pytest.raises(ValueError, match="'MotionCorr/.*_00022_frameImage.mrc' is in optics "
                                         "group 2, which data_optics does not define"):
        read_micrograph_ctfs(path)
    path.write_text(RELION_CTF_STAR.replace("9681.333008", "-9681.333008"))
    with pytest.raises(ValueError, match="_00022_frameImage.mrc': defocus_u must be >= 0"):
        read_micrograph_ctfs(path)
    with pytest.raises(FileNotFoundError, match="missing.star is not a file"):
        read_micrograph_ctfs(tmp_path / "missing.star")
    # without the optional dependency
    path.write_text(RELION_CTF_STAR)
    import sys

    monkeypatch.setitem(sys.modules, "starfile", None)
    with pytest.raises(ImportError, match=r"pip install 'mtdlearn\[star\]'"):
        read_micrograph_ctfs(path)


def test_write_micrograph_ctfs_errors(tmp_path):
    pytest.importorskip("starfile")
    path = tmp_path / "m.star"
    with pytest.raises(ValueError, match="names and ctfs must have the same length, got 2 and 1"):
        write_micrograph_ctfs(path, ["a.mrc", "b.mrc"], [CTF(1e4)])
    with pytest.raises(ValueError, match=r"names\[0\] must be a non-empty str without "
                                         "whitespace"):
        write_micrograph_ctfs(path, ["a b.mrc"], [CTF(1e4)])
    with pytest.raises(TypeError, match=r"ctfs\[0\] must be a CTF, got dict"):
        write_micrograph_ctfs(path, ["a.mrc"], [{"defocus_u": 1e4}])
    with pytest.raises(TypeError, match="names must be a sequence of str, got one str"):
        write_micrograph_ctfs(path, "a.mrc", [CTF(1e4)])
    assert not path.exists()


def test_picks_of_a_mixture_carry_relions_class_number(tmp_path):
    starfile = pytest.importorskip("starfile")
    det = np.array([(0, 10, 20, 0.5, 0.9, 1), (0, 30, 40, 0.0, 0.8, 0), (1, 5, 5, 1.0, 0.7, 2)],
                   dtype=[("measurement", np.int64), ("row", np.int64), ("col", np.int64),
                          ("angle", np.float64), ("probability", np.float64),
                          ("component", np.int64)])
    picks = picks_table(det, 5, ["a.mrc", "b.mrc"])
    assert picks["rlnClassNumber"].tolist() == [2, 1, 3]   # 1-based, as RELION's classes
    back = starfile.read(write_star(picks, tmp_path / "picks.star"))
    assert list(back.columns)[-1] == "rlnClassNumber"
    assert back["rlnClassNumber"].tolist() == [2, 1, 3]
    # one image: no class column
    assert "rlnClassNumber" not in picks_table(det[["measurement", "row", "col", "angle",
                                                    "probability"]], 5).columns


# ---------------------------------------------------------------------------
# the micrographs of a RELION project's micrograph STAR file
#: data_optics and the columns of data_micrographs RELION 3.1's CtfFind writes
#: (``{rows}``: one line per micrograph).
PROJECT_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographOriginalPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
_rlnMicrographPixelSize #7
opticsGroup1            1     0.885000   300.000000     2.700000     0.100000     0.885000
opticsGroup2            2     0.442500   200.000000     1.400000     0.070000     0.885000


# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
_rlnCtfImage #3
_rlnDefocusU #4
_rlnDefocusV #5
_rlnCtfAstigmatism #6
_rlnDefocusAngle #7
_rlnCtfFigureOfMerit #8
_rlnCtfMaxResolution #9
{rows}
"""
PROJECT_ROWS = [
    "MotionCorr/job002/Movies/mic_0001.mrc 1 CtfFind/job003/Movies/mic_0001.ctf:mrc "
    "10864.146484 10575.793945 288.352539 77.995003 0.131144 4.809192",
    "MotionCorr/job002/Movies/mic_0002.mrc 2 CtfFind/job003/Movies/mic_0002.ctf:mrc "
    "9681.333008 9387.520508 293.812500 -81.721298 0.110213 4.191011",
]
PROJECT_CTFS = [
    CTF(10864.146484, 10575.793945, 77.995003, voltage=300.0, spherical_aberration=2.7,
        amplitude_contrast=0.1, pixel_size=0.885),
    CTF(9681.333008, 9387.520508, -81.721298, voltage=200.0, spherical_aberration=1.4,
        amplitude_contrast=0.07, pixel_size=0.885),
]


def _relion_project(root, star_text=None):
    """A RELION-like project: two MRC micrographs of MotionCorr/job002 and the
    micrographs_ctf.star of CtfFind/job003.  Returns the STAR file and the data."""
    mrcfile = pytest.importorskip("mrcfile")
    rng = np.random.default_rng(0)
    data = []
    for i in (1, 2):
        movie = root / "MotionCorr" / "job002" / "Movies" / f"mic_{i:04d}.mrc"
        movie.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.normal(size=(48, 40)).astype(np.float32)
        with mrcfile.new(movie) as mrc:
            mrc.set_data(arr)
            mrc.voxel_size = 0.885
        data.append(arr)
    star = root / "CtfFind" / "job003" / "micrographs_ctf.star"
    star.parent.mkdir(parents=True)
    star.write_text(star_text or PROJECT_STAR.format(rows="\n".join(PROJECT_ROWS)))
    return star, data


def _project_state(root):
    return {p: _state(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_micrograph_star_relion_project(tmp_path):
    pytest.importorskip("starfile")
    pytest.importorskip("dask")
    from mtdlearn.data.micrograph_star import MicrographStar, read_micrograph_star

    root = tmp_path / "project"
    star, data = _relion_project(root)
    before = _project_state(root)
    mics = read_micrograph_star(star)
    assert type(mics) is MicrographStar
    # names as written, resolved from the job directory up to the project directory
    assert mics.names == [row.split()[0] for row in PROJECT_ROWS]
    assert mics.paths == [root / name for name in mics.names]
    assert all(p.is_absolute() for p in mics.paths)
    assert mics.ctfs == PROJECT_CTFS == [c for _, c in read_micrograph_ctfs(star)]
    assert mics.pixel_size == 0.885  # two optics groups of the same pixel size
    # lazy (dask is installed): one single-chunk array per micrograph, read from the files
    assert mics.micrographs.names == ["mic_0001.mrc", "mic_0002.mrc"]
    for lazy, arr in zip(mics.micrographs, data):
        assert hasattr(lazy, "dask") and lazy.numblocks == (1, 1)
        assert_array_equal(lazy.compute(scheduler="synchronous"), arr)
    # paths instead of arrays, a given project directory (str), relative paths
    eager = read_micrograph_star(str(star), lazy=False, project_dir=str(root))
    assert eager.micrographs == eager.paths == mics.paths and eager.ctfs == mics.ctfs
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert read_micrograph_star(os.path.join("CtfFind", "job003", "micrographs_ctf.star"),
                                    lazy=False).paths == mics.paths
    finally:
        os.chdir(cwd)
    # a STAR file outside the project: found with project_dir only
    outside = tmp_path / "elsewhere" / "micrographs_ctf.star"
    outside.parent.mkdir()
    outside.write_text(star.read_text())
    with pytest.raises(FileNotFoundError) as info:
        read_micrograph_star(outside, lazy=False)
    message = str(info.value)
    assert "'MotionCorr/job002/Movies/mic_0001.mrc'" in message and str(outside) in message
    assert f"tried {outside.parent}, {tmp_path}, " in message and "project_dir=" in message
    assert read_micrograph_star(outside, project_dir=root, lazy=False).paths == mics.paths
    # only read: bytes and modification times of every file unchanged
    assert _project_state(root) == before


def test_read_micrograph_star_without_ctfs_and_errors(tmp_path, monkeypatch):
    pytest.importorskip("starfile")
    from mtdlearn.data.micrograph_star import read_micrograph_star

    root = tmp_path / "project"
    star, _ = _relion_project(root)
    # no CTF columns (MotionCorr's corrected_micrographs.star): ctf=False reads them
    no_ctf_rows = [" ".join(row.split()[:2]) for row in PROJECT_ROWS]
    head = PROJECT_STAR[:PROJECT_STAR.index("_rlnCtfImage")]
    no_ctf = root / "MotionCorr" / "job002" / "corrected_micrographs.star"
    no_ctf.write_text(head + "\n".join(no_ctf_rows) + "\n")
    with pytest.raises(ValueError, match=r"has no CTF columns .*run CTF estimation first, or "
                                         r"pass ctf=False \(on the command line: --no-ctf\)"):
        read_micrograph_star(no_ctf)
    mics = read_micrograph_star(no_ctf, ctf=False, lazy=False)
    assert mics.ctfs is None and mics.pixel_size == 0.885
    assert mics.paths == [root / row.split()[0] for row in PROJECT_ROWS]
    # ctf=False on a file with CTFs; without an optics table the pixel size is unknown
    assert read_micrograph_star(star, ctf=False, lazy=False).paths == mics.paths
    bare = root / "bare.star"
    bare.write_text("data_micrographs\nloop_\n_rlnMicrographName #1\n"
                    + "\n".join(row.split()[0] for row in PROJECT_ROWS) + "\n")
    assert read_micrograph_star(bare, ctf=False, lazy=False).pixel_size is None
    with pytest.raises(ValueError, match="no CTF columns .* pass ctf=False"):
        read_micrograph_star(bare)
    # absolute names are taken as they are
    absolute = root / "absolute.star"
    absolute.write_text("data_micrographs\nloop_\n_rlnMicrographName #1\n"
                        f"{root / PROJECT_ROWS[0].split()[0]}\n")
    assert read_micrograph_star(absolute, ctf=False, lazy=False).paths == mics.paths[:1]
    # different pixel sizes
    star.write_text(PROJECT_STAR.replace("0.885000\nopticsGroup2", "1.060000\nopticsGroup2")
                    .format(rows="\n".join(PROJECT_ROWS)))
    with pytest.raises(ValueError, match=r"different pixel sizes \(0.885, 1.06 A/px\)"):
        read_micrograph_star(star)
    with pytest.raises(ValueError, match="different pixel sizes"):
        read_micrograph_star(star, ctf=False)
    # a missing micrograph; no micrograph at all
    star.write_text(PROJECT_STAR.format(rows="\n".join(PROJECT_ROWS)))
    (root / PROJECT_ROWS[1].split()[0]).unlink()
    with pytest.raises(FileNotFoundError, match=r"micrograph 'MotionCorr/job002/Movies/"
                                                r"mic_0002.mrc' of .* not found: .*mic_0002.mrc "
                                                r"is not a file \(1 of the 2 micrographs"):
        read_micrograph_star(star)
    star.write_text(PROJECT_STAR.format(rows=""))
    with pytest.raises(ValueError, match="lists no micrograph"):
        read_micrograph_star(star, lazy=False)
    with pytest.raises(FileNotFoundError, match="missing.star is not a file"):
        read_micrograph_star(root / "missing.star")
    with pytest.raises(FileNotFoundError, match="project_dir .* is not a directory"):
        read_micrograph_star(no_ctf, ctf=False, project_dir=root / "nowhere")
    with pytest.raises(TypeError, match="ctf must be True or False"):
        read_micrograph_star(no_ctf, ctf="no")
    with pytest.raises(TypeError, match="lazy must be True, False or None"):
        read_micrograph_star(no_ctf, lazy=1)
    # without dask: paths by default, an error when asked for lazy arrays
    import sys

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    assert read_micrograph_star(absolute, ctf=False).micrographs == mics.paths[:1]
    with pytest.raises(ImportError, match=r"lazy=True needs .*mtdlearn\[dask\]"):
        read_micrograph_star(absolute, ctf=False, lazy=True)
