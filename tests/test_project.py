"""Tests of mtdlearn.data.project: a simulated RELION project on disk."""

import numpy as np
import pytest

mrcfile = pytest.importorskip("mrcfile")
pytest.importorskip("starfile")

from mtdlearn.data.micrograph_star import read_micrograph_star  # noqa: E402
from mtdlearn.data.project import make_relion_project  # noqa: E402


def test_project_reads_back_as_written(tmp_path):
    project = make_relion_project(tmp_path, n_micrographs=3, size=96, snr=2.0,
                                  random_state=4)
    star = read_micrograph_star(project.star, lazy=False)
    assert [p.resolve() for p in star.paths] == [p.resolve() for p in project.micrographs]
    assert star.ctfs == project.ctfs and star.pixel_size == 2.0
    assert [c.defocus_u for c in project.ctfs] == [10000.0, 17500.0, 25000.0]
    for path in project.micrographs:
        with mrcfile.open(path) as mrc:
            assert mrc.data.shape == (96, 96) and mrc.data.dtype == np.float32
            assert float(mrc.voxel_size.x) == 2.0
    # 0.65 * 21 pixels of atoms' centres and 2 pixels each side, at 2 A/px
    assert project.particle_diameter == pytest.approx((0.65 * 21 + 4) * 2.0)


def test_same_seed_same_files(tmp_path, monkeypatch):
    # mrcfile writes the time of creation into the header: make every call
    # a second later, so that the files can only be equal if it is not kept
    import datetime

    import mrcfile.mrcobject

    clock = iter(datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=s)
                 for s in range(1000))
    monkeypatch.setattr(mrcfile.mrcobject, "datetime",
                        type("Clock", (), {"now": staticmethod(lambda: next(clock))}))
    a = make_relion_project(tmp_path / "a", n_micrographs=2, size=64, random_state=1)
    b = make_relion_project(tmp_path / "b", n_micrographs=2, size=64, random_state=1)
    for p, q in zip(a.micrographs, b.micrographs):
        assert p.read_bytes() == q.read_bytes()


def test_existing_files_are_not_replaced(tmp_path):
    project = make_relion_project(tmp_path, n_micrographs=2, size=64, random_state=1)
    before = project.micrographs[0].read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_relion_project(tmp_path, n_micrographs=2, size=64, random_state=2)
    assert project.micrographs[0].read_bytes() == before
    make_relion_project(tmp_path, n_micrographs=2, size=64, random_state=2, overwrite=True)
    assert project.micrographs[0].read_bytes() != before
