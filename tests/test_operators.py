"""Tests of patches and the shift operators C T_l Z (paper eq. 6-7, DESIGN.md §2).

Most operators here only move values around (gathers, zero padding), so their
results are compared exactly.  The adjoint identity sums up to L**2 products
of numbers bounded by 10, so its float64 rounding is below 1e-12 * L**2 * 100.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal

from mtdlearn import FourierBesselBasis
from mtdlearn.data.simulate import make_measurement, make_target
from mtdlearn.imaging.shifts import (all_shifts, empty_shifts, gather_adjoint, nonempty_shifts,
                                offset_to_shift, pad_shift_crop, pad_shift_crop_adjoint,
                                shift_gather_index, shift_to_offset)
from mtdlearn.data.measurements import extract_patches, patch_grid_shape

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)
sizes = st.integers(1, 7)


@st.composite
def image_and_shift(draw, lead=()):
    L = draw(sizes)
    image = draw(arrays(np.float64, lead + (L, L), elements=finite))
    shift = (draw(st.integers(0, 2 * L - 1)), draw(st.integers(0, 2 * L - 1)))
    return image, shift


def naive_pad_shift_crop(F, shift):
    """The definition, pixel by pixel: zero-pad to 2L x 2L (right and bottom),
    (T_l Z F)[i, j] = (Z F)[(i + l0) % 2L, (j + l1) % 2L], keep the top-left L x L."""
    L = F.shape[0]
    Z = np.zeros((2 * L, 2 * L))
    for i in range(L):
        for j in range(L):
            Z[i, j] = F[i, j]
    out = np.zeros((L, L))
    for i in range(L):
        for j in range(L):
            out[i, j] = Z[(i + shift[0]) % (2 * L), (j + shift[1]) % (2 * L)]
    return out


def pad(F):
    L = F.shape[-1]
    Z = np.zeros(F.shape[:-2] + (2 * L, 2 * L))
    Z[..., :L, :L] = F
    return Z


def circular_shift(G, shift):
    """T_l on a 2L x 2L array: out[i, j] = G[(i + l0) % 2L, (j + l1) % 2L]."""
    return np.roll(G, (-shift[0], -shift[1]), axis=(-2, -1))


# ----------------------------------------------------------- shift operator
@given(image_and_shift())
def test_pad_shift_crop_matches_definition(case):
    F, shift = case
    assert_array_equal(pad_shift_crop(F, shift), naive_pad_shift_crop(F, shift))
    # and C T_l Z written with the padded array and a circular shift
    L = F.shape[0]
    assert_array_equal(pad_shift_crop(F, shift), circular_shift(pad(F), shift)[:L, :L])


@given(image_and_shift(lead=(2, 3)))
def test_pad_shift_crop_batches(case):
    F, shift = case
    out = pad_shift_crop(F, shift)
    assert out.shape == F.shape
    for a in range(2):
        for b in range(3):
            assert_array_equal(out[a, b], pad_shift_crop(F[a, b], shift))


@given(image_and_shift(lead=(2,)))
def test_all_shifts_at_once(case):
    F, _ = case
    L = F.shape[-1]
    every = pad_shift_crop(F, None)
    assert every.shape == (2, 2 * L, 2 * L, L, L)
    for l0 in range(2 * L):
        for l1 in range(2 * L):
            assert_array_equal(every[:, l0, l1], pad_shift_crop(F, (l0, l1)))


@given(case=image_and_shift(), data=st.data())
def test_shift_composition(case, data):
    # T_l T_l' = T_{(l + l') mod 2L} on the 2L x 2L padded grid
    F, shift = case
    L = F.shape[0]
    other = (data.draw(st.integers(0, 2 * L - 1)), data.draw(st.integers(0, 2 * L - 1)))
    both = ((shift[0] + other[0]) % (2 * L), (shift[1] + other[1]) % (2 * L))
    G = pad(F)
    assert_array_equal(circular_shift(circular_shift(G, shift), other), circular_shift(G, both))
    assert_array_equal(circular_shift(circular_shift(G, other), shift)[:L, :L],
                       pad_shift_crop(F, both))


@given(case=image_and_shift(lead=(3,)), data=st.data())
def test_adjoint_identity(case, data):
    x, shift = case
    L = x.shape[-1]
    y = data.draw(arrays(np.float64, (3, L, L), elements=finite))
    lhs = np.sum(pad_shift_crop(x, shift) * y, axis=(-2, -1))
    rhs = np.sum(x * pad_shift_crop_adjoint(y, shift), axis=(-2, -1))
    assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * 100 * L * L)
    assert pad_shift_crop_adjoint(y, shift).shape == (3, L, L)


@given(image_and_shift())
def test_offset_semantics(case):
    # C T_l Z F shows F with its top-left corner at offset d = shift_to_offset(l)
    F, shift = case
    L = F.shape[0]
    d = shift_to_offset(shift, L)
    expected = np.zeros((L, L))
    if L not in d:
        for i in range(L):
            for j in range(L):
                a, b = i - d[0], j - d[1]
                if 0 <= a < L and 0 <= b < L:
                    expected[i, j] = F[a, b]
    assert_array_equal(pad_shift_crop(F, shift), expected)


@pytest.mark.parametrize("L", [1, 2, 3, 5, 8])
def test_shift_counts_and_empty_shifts(L):
    shifts = all_shifts(L)
    assert shifts.shape == (4 * L * L, 2)
    assert_array_equal(shifts[:, 0] * 2 * L + shifts[:, 1], np.arange(4 * L * L))
    ne, em = nonempty_shifts(L), empty_shifts(L)
    assert ne.size == (2 * L - 1) ** 2
    assert em.size == 4 * L - 1
    assert_array_equal(np.sort(np.concatenate([ne, em])), np.arange(4 * L * L))
    F = 1.0 + np.random.default_rng(L).uniform(size=(L, L))  # no zero pixel
    every = pad_shift_crop(F, None).reshape(4 * L * L, L, L)
    assert np.all(every[em] == 0.0)
    assert np.all(np.any(every[ne] != 0.0, axis=(-2, -1)))
    # an empty shift has offset L on at least one axis
    assert np.all(np.any(shift_to_offset(shifts[em], L) == L, axis=1))


@given(case=image_and_shift(), data=st.data())
def test_shift_gather_index(case, data):
    F, _ = case
    L = F.shape[0]
    F_ext = np.append(F.ravel(), 0.0)
    index = shift_gather_index(L)
    assert index.shape == (4 * L * L, L * L)
    every = pad_shift_crop(F, None).reshape(4 * L * L, L * L)
    assert_array_equal(F_ext[index], every)
    subset = np.array(data.draw(st.lists(st.integers(0, 4 * L * L - 1), min_size=1,
                                         max_size=6)))
    assert_array_equal(shift_gather_index(L, subset), index[subset])
    assert np.all(index[empty_shifts(L)] == L * L)


@given(case=image_and_shift(lead=(2,)), data=st.data())
def test_gather_adjoint_identity(case, data):
    """<gather(x), y> = <x, gather_adjoint(y)> for the shifts' gather table."""
    x, _ = case
    L = x.shape[-1]
    shifts = np.array(data.draw(st.lists(st.integers(0, 4 * L * L - 1), min_size=1,
                                         max_size=5)))
    index = shift_gather_index(L, shifts)
    y = data.draw(arrays(np.float64, (2,) + index.shape, elements=finite))
    gathered = np.concatenate([x.reshape(2, -1), np.zeros((2, 1))], axis=1)[:, index]
    lhs = np.einsum("bsk,bsk->b", gathered, y)
    rhs = np.einsum("bk,bk->b", x.reshape(2, -1), gather_adjoint(y, index, L * L))
    assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * 100 * index.size)


@given(L=st.integers(1, 12), data=st.data())
def test_offset_shift_round_trip(L, data):
    d = np.array(data.draw(st.lists(st.integers(-(L - 1), L - 1), min_size=2, max_size=2)))
    shift = offset_to_shift(d, L)
    assert np.all((shift >= 0) & (shift < 2 * L)) and not np.any(shift == L)
    assert_array_equal(shift_to_offset(shift, L), d)
    # and over every non-empty shift
    ne = all_shifts(L)[nonempty_shifts(L)]
    off = shift_to_offset(ne, L)
    assert off.min() == -(L - 1) and off.max() == L - 1
    assert_array_equal(offset_to_shift(off, L), ne)


def test_shift_errors():
    F = np.ones((3, 3))
    for bad in [(0, 6), (-1, 0), (1.0, 2.0), (1, 2, 3), 4]:
        with pytest.raises(ValueError, match="shift"):
            pad_shift_crop(F, bad)
        with pytest.raises(ValueError, match="shift"):
            pad_shift_crop_adjoint(F, bad)
    with pytest.raises(ValueError, match="image"):
        pad_shift_crop(np.ones((3, 4)), (0, 0))
    with pytest.raises(ValueError, match="patch"):
        pad_shift_crop_adjoint(np.ones((3, 4)), (0, 0))


# ------------------------------------------------ generator / model agreement
def _touching_copies(positions, origin_rows, origin_cols, L):
    """For each tile, the indices of the copies whose L x L box meets it."""
    out = []
    for r0, c0 in zip(origin_rows, origin_cols):
        d = positions - np.array([r0, c0])
        out.append(np.flatnonzero(np.all(np.abs(d) <= L - 1, axis=1)))
    return out


@pytest.mark.parametrize("size, n_measurements", [((203, 198), None), (120, 2)])
def test_every_patch_is_a_shifted_rotated_copy(size, n_measurements):
    """Noise-free simulation agrees exactly with the patch model (eq. 6):
    each patch is C T_l Z F_phi for the true (l, phi) of the one copy meeting
    it, or zero."""
    basis = FourierBesselBasis(5, n_coefficients=10)
    L = basis.image_size
    coef = make_target(basis, random_state=3)
    X, truth = make_measurement(coef, basis, size, density=0.04,
                                n_measurements=n_measurements, random_state=4)
    stack = X[None] if n_measurements is None else X
    assert truth.noise_variance == 0.0
    assert_array_equal(X, truth.clean)
    copies = basis.evaluate(basis.rotate(coef, truth.angles))  # (p, L, L)
    n_touched = 0
    for mi, M in enumerate(stack):
        patches = extract_patches(M, L)
        nr, nc = patch_grid_shape(M.shape, L)
        rows, cols = np.divmod(np.arange(nr * nc), nc)
        origins_r, origins_c = rows * L, cols * L
        mine = np.flatnonzero(truth.measurement == mi)
        touching = _touching_copies(truth.positions[mine], origins_r, origins_c, L)
        for m, idx in enumerate(touching):
            assert idx.size <= 1, f"tile {m} touches {idx.size} copies"
            if idx.size == 0:
                assert np.all(patches[m] == 0.0)
                continue
            i = mine[idx[0]]
            d = truth.positions[i] - np.array([origins_r[m], origins_c[m]])
            shift = offset_to_shift(d, L)
            assert_array_equal(shift_to_offset(shift, L), d)
            expected = pad_shift_crop(copies[i], shift)
            assert_allclose(patches[m], expected, rtol=0, atol=1e-12)
            n_touched += 1
    # the check was not vacuous
    assert n_touched >= truth.n_copies


def test_tiles_touch_at_most_one_copy_large():
    # vectorized count of copies per tile over a larger measurement
    basis = FourierBesselBasis(5, n_coefficients=10)
    L = basis.image_size
    coef = make_target(basis, random_state=0)
    _, truth = make_measurement(coef, basis, 1000, density=0.04, random_state=1)
    pos = truth.positions
    # the (up to 2 x 2) tiles each copy meets, as distinct (copy, tile row, tile col)
    triples = np.concatenate([
        np.stack([np.arange(len(pos)), (pos[:, 0] + a) // L, (pos[:, 1] + b) // L], axis=1)
        for a in (0, L - 1) for b in (0, L - 1)
    ])
    triples = np.unique(triples, axis=0)
    _, per_tile = np.unique(triples[:, 1:], axis=0, return_counts=True)
    assert per_tile.max() == 1
    assert len(per_tile) > truth.n_copies
