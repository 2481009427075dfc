"""Tests of mtdlearn.rotations."""

import numpy as np
import pytest
from sklearn.base import clone

from mtdlearn.rotations import UniformRotationGrid, check_rotation_grid


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
