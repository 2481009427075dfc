"""Tests of mtdlearn.basis.rotations."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.base import clone

from mtdlearn import FourierBesselBasis
from mtdlearn.basis.rotations import (UniformRotationGrid, _grid_schedule, auto_refinement,
                                check_rotation_grid)


def test_uniform_grid_angles():
    np.testing.assert_allclose(UniformRotationGrid(8).get_angles(), np.arange(8) * np.pi / 4)
    assert UniformRotationGrid(1).get_angles().tolist() == [0.0]


def test_int_shorthand_and_custom_grid():
    grid, angles = check_rotation_grid(4)
    assert grid == UniformRotationGrid(4) and angles.shape == (4,)

    class Custom:
        def get_angles(self):
            return np.array([0.0, 1.0])

    grid, angles = check_rotation_grid(Custom())
    assert angles.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("value, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                        ("8", TypeError), (True, TypeError)])
def test_bad_rotations(value, exc):
    with pytest.raises(exc, match="rotations"):
        check_rotation_grid(value)


def test_bad_custom_grid():
    class Empty:
        def get_angles(self):
            return np.array([])

    with pytest.raises(ValueError, match="get_angles"):
        check_rotation_grid(Empty())


def test_params_and_clone():
    g = UniformRotationGrid(8)
    c = clone(g)
    assert c == g and c is not g
    assert g.set_params(n_rotations=4).get_angles().size == 4
    with pytest.raises(ValueError, match="invalid parameter"):
        g.set_params(K=3)
    assert "n_rotations=4" in repr(g)


@given(st.sampled_from([3, 5, 7, 9, 11, 13, 15, 21, 25]), st.integers(1, 40))
@settings(max_examples=30, deadline=None)
def test_auto_refinement_grows_the_grid_to_the_top_angular_frequency(size, K):
    """refinement="auto": the smallest power of two r with r K >= nu_max."""
    nu_max = int(np.max(np.abs(FourierBesselBasis(size).frequencies)))
    r = auto_refinement(FourierBesselBasis(size), K)
    if K >= nu_max:
        assert r is None
    else:
        assert r >= 2 and r & (r - 1) == 0 and r * K >= nu_max > r // 2 * K


@pytest.mark.parametrize("K, r, sizes", [(16, 2, [16, 32]), (16, 3, [16, 32, 48]),
                                         (16, 4, [16, 32, 64]), (8, 5, [8, 16, 32, 40])])
def test_refinement_grid_schedule(K, r, sizes):
    """Coarse to fine doubles the grid while below r K, then ends on r K."""
    assert _grid_schedule(K, r) == sizes
