"""Tests of mtdlearn.imaging.background: the robust background of a micrograph."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtdlearn.imaging.background import WINDOW, estimate_background, subtract_background


@settings(max_examples=25, deadline=None, derandomize=True)
@given(L=st.integers(1, 7), blocks=st.integers(16, 30), split=st.integers(0, 8),
       height=st.floats(-5, 5).filter(lambda h: abs(h) > 1e-3),
       level=st.floats(-3, 3), window=st.sampled_from([1, 3, 5, 7]))
def test_a_noiseless_step_on_the_patch_grid_is_recovered_exactly(L, blocks, split, height,
                                                                  level, window):
    # a straight step on a patch boundary, over fewer than half of the
    # columns: each window's median is the value of the side its centre is
    # on (a straight step stays a step), and the typical level is the other
    # side's, so the estimate is the step itself, exactly
    X = np.full((blocks * L, blocks * L), level)
    start = (blocks // 2 + 1 + split) * L
    X[:, start:] += height
    expected = np.zeros_like(X)
    if start < X.shape[1]:
        expected[:, start:] = height
    np.testing.assert_allclose(estimate_background(X, L, window=window), expected,
                               rtol=0, atol=1e-12 * (abs(level) + abs(height)))
    np.testing.assert_allclose(subtract_background(X, L, window=window), level,
                               rtol=0, atol=1e-12 * (abs(level) + abs(height)))


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10), offset=st.floats(-10, 10))
def test_equivariant_to_affine_changes_of_the_pixel_values(seed, scale, offset):
    # medians commute with increasing affine maps: the background scales with
    # the values and ignores a constant offset (the micrograph's level is kept)
    X = np.random.default_rng(seed).normal(size=(60, 70))
    B = estimate_background(X, 5, window=3)
    np.testing.assert_allclose(estimate_background(scale * X + offset, 5, window=3),
                               scale * B, rtol=0, atol=1e-12 * (scale + abs(offset)))
    np.testing.assert_allclose(subtract_background(X + offset, 5, window=3),
                               X + offset - B, rtol=0, atol=1e-12 * (1 + abs(offset)))


def test_noise_alone_gives_a_small_background():
    # white noise of unit variance: a patch median has standard deviation
    # about 1.2533 / L, the median of WINDOW**2 of them 1.2533 / WINDOW
    # times that: 0.021 at L = 5 (the patch medians are independent)
    X = np.random.default_rng(0).normal(size=(1024, 1024))
    B = estimate_background(X, 5)
    predicted = 1.2533**2 / (5 * WINDOW)
    assert 0.5 * predicted < B.std() < 1.5 * predicted
    assert abs(np.median(B[:1020:5, :1020:5])) < 1e-12   # one value per whole patch


def test_a_noisy_step_is_removed_away_from_the_edge():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 400))
    X[:, 300:] += 2.0                       # 2 noise standard deviations, 25 % of columns
    Y = subtract_background(X, 5)
    far = 5 * (WINDOW // 2 + 1)             # beyond half a window of the edge
    right, left = Y[:, 300 + far:], Y[:, :300 - far]
    # each side's mean is within a few of the estimate's standard deviations
    # (0.021, test above) of the other's; without the correction they differ by 2
    assert abs(right.mean() - left.mean()) < 0.1
    assert abs(X[:, 300 + far:].mean() - X[:, :300 - far].mean() - 2.0) < 0.05


def test_shape_dtype_and_the_input_is_not_modified():
    X = np.random.default_rng(2).normal(size=(53, 41)).astype(np.float32)
    before = X.copy()
    Y = subtract_background(X, 5, window=3)
    assert Y.dtype == np.float32 and Y.shape == X.shape
    np.testing.assert_array_equal(X, before)
    B = estimate_background(X, 5, window=3)
    # constant on each patch; the rows and columns past the last whole patch
    # (50..52, 40) take the last patch's value
    assert np.all(B[:5, :5] == B[0, 0])
    assert np.all(B[45:, 35:] == B[45, 35])
    np.testing.assert_array_equal(Y, X - B)
    ints = estimate_background(np.arange(400).reshape(20, 20), 4, window=3)
    assert ints.dtype == np.float64


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(micrograph=np.zeros(10)), ValueError, "2-D"),
    (dict(micrograph=np.zeros((8, 8), complex)), TypeError, "real"),
    (dict(micrograph=np.zeros((8, 8), bool)), TypeError, "numeric"),
    (dict(micrograph=np.full((8, 8), np.nan)), ValueError, "finite"),
    (dict(image_size=9), ValueError, "smaller than one image_size"),
    (dict(image_size=0), ValueError, "image_size must be >= 1"),
    (dict(image_size=2.5), TypeError, "image_size must be an integer"),
    (dict(window=4), ValueError, "window must be odd"),
    (dict(window=0), ValueError, "window must be >= 1"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    args = dict(micrograph=np.zeros((8, 8)), image_size=3, window=3)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        subtract_background(args.pop("micrograph"), args.pop("image_size"), **args)
