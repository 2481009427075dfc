"""Tests of the steerable Fourier-Bessel basis (DESIGN.md §2: basis, pixel grid,
rotation, the paper's complex coefficients).

Tolerances: coefficients are drawn in [-10, 10] and |J_nu| <= 1, so every
value involved is at most ~10 * p in magnitude and float64 rounding leaves
absolute errors of a few 1e-14 at most; ``ATOL = 1e-10`` (with ``RTOL = 1e-10``)
is generous yet far below any convention error, which would be O(1).
"""

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy import special

from mtdlearn import FourierBesselBasis
from mtdlearn.basis import fourier_bessel as basis_module

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

RTOL = 1e-10
ATOL = 1e-10

# A few bases covering both selection rules, a non-default radius and a
# basis whose outer pixels fall outside the disk.
BASES = [
    FourierBesselBasis(5, n_coefficients=10),
    FourierBesselBasis(7),
    FourierBesselBasis(9, bandlimit=12.0),
    FourierBesselBasis(5, radius=2.5),
    FourierBesselBasis(7, n_coefficients=15, radius=3.0),
]

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)
angle = st.floats(-4 * np.pi, 4 * np.pi, allow_nan=False, allow_infinity=False)


@st.composite
def basis_and_coef(draw, n=None):
    basis = draw(st.sampled_from(BASES))
    shape = (basis.n_functions,) if n is None else (n, basis.n_functions)
    coef = draw(arrays(np.float64, shape, elements=finite))
    return basis, coef


def _grid(basis):
    L = basis.image_size
    n = L // 2
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    x, y = j - n, i - n
    return x, y


# ---------------------------------------------------------------- selection
def test_paper_basis_l5_m10():
    basis = FourierBesselBasis(5, n_coefficients=10)
    assert basis.n_functions == 10
    # (nu, q) = (0,1), (1,1)x2, (2,1)x2, (0,2), (1,2)x2, (2,2)x2; (3,1) is not a candidate
    assert_array_equal(basis.frequencies, [0, 1, 1, 2, 2, 0, 1, 1, 2, 2])
    assert_array_equal(basis.radial_indices, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    assert_array_equal(basis.kinds, [0, 1, 2, 1, 2, 0, 1, 2, 1, 2])
    expected = [special.jn_zeros(nu, q)[-1]
                for nu, q in zip(basis.frequencies, basis.radial_indices)]
    assert_allclose(basis.roots, expected, rtol=1e-15)
    assert basis.max_frequency == 2


def test_default_candidates_l5():
    # Q = 2 roots of J_0 below 2*pi, nu_max = 3: the 10 functions above.
    assert FourierBesselBasis(5).n_functions == 10
    assert_array_equal(FourierBesselBasis(5).frequencies,
                       FourierBesselBasis(5, n_coefficients=10).frequencies)


def test_smallest_image_has_a_function():
    # L = 3: Q = 1 and no nu > 0 has its first root below lambda_{0,1}; the
    # basis must still hold the radial function (0, 1).
    basis = FourierBesselBasis(3)
    assert_array_equal(basis.frequencies, [0])
    assert_array_equal(basis.radial_indices, [1])


# The default (neither n_coefficients nor bandlimit) for L <= 9, recorded with the
# first release: every candidate of the n_coefficients rule, (nu, q) in order of
# lambda, each nu > 0 as a (cos, sin) pair.  L = 11 is not pinned: that rule keeps
# 105 functions whose pixel matrix has rank 101, so it cannot be kept as a default.
PINNED_DEFAULTS = {
    3: [(0, 1)],
    5: [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)],
    7: [(0, 1), (1, 1), (2, 1), (0, 2), (3, 1), (1, 2), (4, 1), (2, 2), (0, 3), (3, 2),
        (1, 3), (4, 2), (2, 3), (3, 3), (4, 3)],
    9: [(0, 1), (1, 1), (2, 1), (0, 2), (3, 1), (1, 2), (4, 1), (2, 2), (0, 3), (5, 1),
        (3, 2), (6, 1), (1, 3), (4, 2), (7, 1), (2, 3), (0, 4), (5, 2), (3, 3), (1, 4),
        (6, 2), (4, 3), (2, 4), (7, 2), (5, 3), (3, 4), (6, 3), (4, 4), (7, 3), (5, 4),
        (6, 4), (7, 4)],
}


@pytest.mark.parametrize("L", sorted(PINNED_DEFAULTS))
def test_default_basis_pinned_for_small_images(L):
    basis = FourierBesselBasis(L)
    nu = [nu for nu, _ in PINNED_DEFAULTS[L] for _ in range(1 if nu == 0 else 2)]
    q = [q for nu, q in PINNED_DEFAULTS[L] for _ in range(1 if nu == 0 else 2)]
    kinds = [k for nu, _ in PINNED_DEFAULTS[L] for k in ((0,) if nu == 0 else (1, 2))]
    assert_array_equal(basis.frequencies, nu)
    assert_array_equal(basis.radial_indices, q)
    assert_array_equal(basis.kinds, kinds)
    assert_array_equal(basis.roots, [special.jn_zeros(v, k)[-1] for v, k in zip(nu, q)])
    # the same functions as the n_coefficients rule with every candidate
    assert_array_equal(basis.matrix, FourierBesselBasis(L, n_coefficients=len(nu)).matrix)


@pytest.mark.parametrize("m, count", [(1, 1), (2, 3), (3, 3), (4, 5), (6, 6), (7, 8)])
def test_pair_never_split(m, count):
    basis = FourierBesselBasis(5, n_coefficients=m)
    assert basis.n_functions == count
    # a cos is always followed by its sin
    assert_array_equal(basis.kinds[basis.kinds == 1] + 1,
                       basis.kinds[np.flatnonzero(basis.kinds == 1) + 1])


@pytest.mark.parametrize("L", [5, 7, 9])
def test_n_coefficients_is_prefix_of_candidates(L):
    # exhaustive over m: the first m candidates in order of lambda, pairs kept whole
    full = FourierBesselBasis(L)
    for m in range(1, full.n_functions + 1):
        basis = FourierBesselBasis(L, n_coefficients=m)
        p = basis.n_functions
        assert p in (m, m + 1)
        if p == m + 1:
            assert basis.kinds[-1] == 2
        assert_array_equal(basis.frequencies, full.frequencies[:p])
        assert_array_equal(basis.radial_indices, full.radial_indices[:p])
        assert_array_equal(basis.kinds, full.kinds[:p])
    assert np.all(np.diff(full.roots) >= 0)


# roots lambda_{nu,q} for nu < 40, q <= 12: every root below 25 is in this table
_ROOTS = np.array([special.jn_zeros(nu, 12) for nu in range(40)])


@given(bandlimit=st.floats(2.5, 17.0))  # <= 69 functions: the pixels in the disk
def test_bandlimit_keeps_exactly_roots_below(bandlimit):
    basis = FourierBesselBasis(9, bandlimit=bandlimit)
    nu, q = np.nonzero(_ROOTS <= bandlimit)
    expected = set(zip(nu.tolist(), (q + 1).tolist()))
    kept = set(zip(basis.frequencies.tolist(), basis.radial_indices.tolist()))
    assert kept == expected
    assert basis.n_functions == sum(1 if nu == 0 else 2 for nu, _ in expected)
    assert np.all(basis.roots <= bandlimit)
    assert np.all(np.diff(basis.roots) >= 0)



def test_large_bandlimit_roots_match_jn_zeros():
    # roots come from one jn_zeros call per nu: the selection must still be every
    # (nu, q) with lambda <= bandlimit, and the q-th root that of jn_zeros(nu, q)
    bandlimit = np.pi * 21
    basis = FourierBesselBasis(41, bandlimit=bandlimit)
    table = [special.jn_zeros(nu, 25) for nu in range(70)]  # every root below 72
    assert all(t[-1] > bandlimit for t in table) and table[-1][0] > bandlimit
    expected = {(nu, q + 1) for nu, t in enumerate(table) for q in np.flatnonzero(t <= bandlimit)}
    kept = set(zip(basis.frequencies.tolist(), basis.radial_indices.tolist()))
    assert kept == expected
    rng = np.random.default_rng(0)
    for k in rng.choice(basis.n_functions, 40, replace=False):
        nu, q = basis.frequencies[k], basis.radial_indices[k]
        assert basis.roots[k] == special.jn_zeros(nu, q)[-1]

# ------------------------------------------------------------- pixel grid
def test_default_radius_and_support():
    # default radius n + 1: the outer ring (r = n) is inside the disk
    basis = FourierBesselBasis(5)
    assert basis.mask.all()
    assert basis == FourierBesselBasis(5, radius=None)
    assert_array_equal(basis.matrix, FourierBesselBasis(5, radius=3.0).matrix)
    # image_size 7 with radius 3: pixels with r / radius >= 1 are exactly zero
    basis = FourierBesselBasis(7, n_coefficients=10, radius=3)
    x, y = _grid(basis)
    assert_array_equal(basis.mask, np.hypot(x, y) < 3)
    assert not basis.mask[0, 3]  # r = 3 exactly
    images = basis.evaluate(np.random.default_rng(0).normal(size=(4, basis.n_functions)))
    assert np.all(images[:, ~basis.mask] == 0.0)
    assert np.all(images[:, basis.mask] != 0.0)


@pytest.mark.parametrize("basis", BASES[:4], ids=repr)
def test_pixel_grid_convention(basis):
    x, y = _grid(basis)
    radius = basis._radius
    r, theta = np.hypot(x, y) / radius, np.arctan2(y, x)
    for k in range(basis.n_functions):
        nu, lam = basis.frequencies[k], basis.roots[k]
        ang = {0: np.ones_like(theta), 1: np.cos(nu * theta), 2: np.sin(nu * theta)}
        expected = np.where(r < 1, special.jv(nu, lam * r) * ang[basis.kinds[k]], 0.0)
        assert_allclose(basis.evaluate(np.eye(basis.n_functions)[k]), expected,
                        rtol=RTOL, atol=1e-14)


def test_pixel_grid_nu1_cos_and_sin():
    basis = FourierBesselBasis(5, n_coefficients=10)
    lam = special.jn_zeros(1, 1)[0]
    cos_img = basis.evaluate(np.eye(10)[1])
    sin_img = basis.evaluate(np.eye(10)[2])
    for i in range(5):
        for j in range(5):
            x, y = j - 2, i - 2
            r, theta = np.hypot(x, y), np.arctan2(y, x)
            radial = special.jv(1, lam * r / 3)
            # values <= 0.6; the basis rounds lam * (r / 3) in another order
            # (|J_1'| <= 0.6 times an ulp of 3.6) and may take sin/cos from
            # numpy's SIMD loops instead of libm: a few ulp of 1 (2.2e-16)
            # apart, whatever the CPU; a wrong convention is off by ~0.1
            assert cos_img[i, j] == pytest.approx(radial * np.cos(theta), abs=1e-14)
            assert sin_img[i, j] == pytest.approx(radial * np.sin(theta), abs=1e-14)
    # orientation: y grows with the row index, x with the column index
    assert sin_img[3, 2] > 0 and sin_img[1, 2] < 0
    assert cos_img[2, 3] > 0 and cos_img[2, 1] < 0


def test_evaluate_points_matches_grid():
    basis = FourierBesselBasis(7)
    coef = np.random.default_rng(1).normal(size=basis.n_functions)
    x, y = _grid(basis)
    assert_allclose(basis.evaluate_points(coef, x, y), basis.evaluate(coef), rtol=0, atol=1e-13)
    # outside the disk the expansion is zero
    assert basis.evaluate_points(coef, 4.0, 0.1) == 0.0


# ------------------------------------------------------------- rotation
@given(bc=basis_and_coef(), phi=angle,
       rho=arrays(np.float64, 8, elements=st.floats(0, 0.999)),
       theta=arrays(np.float64, 8, elements=st.floats(-np.pi, np.pi)))
def test_steerability_at_arbitrary_points(bc, phi, rho, theta):
    basis, coef = bc
    r = rho * basis._radius
    x, y = r * np.cos(theta), r * np.sin(theta)
    xr, yr = r * np.cos(theta + phi), r * np.sin(theta + phi)
    lhs = basis.evaluate_points(basis.rotate(coef, phi), x, y)
    rhs = basis.evaluate_points(coef, xr, yr)
    assert_allclose(lhs, rhs, rtol=RTOL, atol=ATOL)


@given(bc=basis_and_coef(), phi=angle)
def test_rotated_image_is_basis_on_grid(bc, phi):
    # the pixel image of the rotated image is evaluate(rotate(coef, phi))
    basis, coef = bc
    x, y = _grid(basis)
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    expected = basis.evaluate_points(coef, r * np.cos(theta + phi), r * np.sin(theta + phi))
    assert_allclose(basis.evaluate(basis.rotate(coef, phi)), expected, rtol=RTOL, atol=ATOL)


@given(bc=basis_and_coef(), a=angle, b=angle)
def test_rotation_is_group_action(bc, a, b):
    basis, coef = bc
    assert_allclose(basis.rotate(basis.rotate(coef, a), b), basis.rotate(coef, a + b),
                    rtol=RTOL, atol=ATOL)
    assert_allclose(basis.rotate(coef, 2 * np.pi), coef, rtol=RTOL, atol=ATOL)
    assert_allclose(basis.rotate(coef, 0.0), coef, rtol=0, atol=0)
    assert_allclose(basis.rotate(basis.rotate(coef, a), -a), coef, rtol=RTOL, atol=ATOL)
    # norm preserving (an orthogonal map on the real coefficients)
    assert np.linalg.norm(basis.rotate(coef, a)) == pytest.approx(np.linalg.norm(coef),
                                                                  rel=RTOL, abs=ATOL)


@given(bc=basis_and_coef(n=3), angles=arrays(np.float64, 4, elements=angle))
def test_rotate_broadcasts(bc, angles):
    basis, coefs = bc
    p = basis.n_functions
    many = basis.rotate(coefs[0], angles)
    assert many.shape == (4, p)
    for k in range(4):
        assert_allclose(many[k], basis.rotate(coefs[0], angles[k]), rtol=0, atol=0)
    paired = basis.rotate(coefs, angles[:3])
    assert paired.shape == (3, p)
    for k in range(3):
        assert_allclose(paired[k], basis.rotate(coefs[k], angles[k]), rtol=0, atol=0)
    outer = basis.rotate(coefs, angles[:, None])
    assert outer.shape == (4, 3, p)
    assert_allclose(outer[2, 1], basis.rotate(coefs[1], angles[2]), rtol=0, atol=0)
    # the input is never modified
    before = coefs.copy()
    basis.rotate(coefs, angles[:3])
    assert_array_equal(coefs, before)


@given(bc=basis_and_coef(), phi=angle)
def test_rotation_matrices(bc, phi):
    basis, coef = bc
    R = basis.rotation_matrices(phi)
    assert R.shape == (basis.n_functions,) * 2
    assert_allclose(coef @ R.T, basis.rotate(coef, phi), rtol=RTOL, atol=ATOL)
    assert_allclose(R @ R.T, np.eye(basis.n_functions), rtol=0, atol=1e-13)
    assert basis.rotation_matrices(np.zeros(3)).shape == (3,) + R.shape


def test_rotate_rejects_wrong_length():
    basis = BASES[0]
    with pytest.raises(ValueError, match="coef"):
        basis.rotate(np.ones(9), 0.1)
    with pytest.raises(ValueError, match="angles"):
        basis.rotate(np.ones(10), np.nan)


# ----------------------------------------------------- complex coefficients
@given(bc=basis_and_coef(n=2), phi=angle)
def test_complex_round_trip_and_rotation(bc, phi):
    basis, coefs = bc
    coef = coefs[0]
    z = basis.to_complex(coef)
    assert z.dtype == np.complex128
    assert_allclose(basis.from_complex(z), coef, rtol=RTOL, atol=ATOL)
    # the other way, for z produced by to_complex
    z2 = basis.to_complex(coefs[1])
    assert_allclose(basis.to_complex(basis.from_complex(z2)), z2, rtol=RTOL, atol=ATOL)
    # batch shape kept
    assert basis.to_complex(coefs).shape == coefs.shape
    # rotation multiplies alpha_{nu,q} by exp(i nu phi)
    nu = basis.complex_frequencies
    assert_allclose(basis.to_complex(basis.rotate(coef, phi)), z * np.exp(1j * nu * phi),
                    rtol=RTOL, atol=ATOL)
    # real image: alpha_{-nu} = conj(alpha_nu)
    cos, sin = basis.kinds == 1, basis.kinds == 2
    assert_allclose(z[sin], np.conj(z[cos]), rtol=0, atol=0)
    assert np.all(z[basis.kinds == 0].imag == 0)


def test_complex_frequencies_signs():
    basis = FourierBesselBasis(5, n_coefficients=10)
    assert_array_equal(basis.complex_frequencies, [0, 1, -1, 2, -2, 0, 1, -1, 2, -2])


@pytest.mark.parametrize("basis", BASES, ids=repr)
def test_complex_coefficients_synthesize_the_image(basis):
    # f = sum alpha_{nu,q} J_|nu|(lambda r) exp(i nu theta)  (paper eq. 2)
    coef = np.random.default_rng(2).normal(size=basis.n_functions)
    z = basis.to_complex(coef)
    x, y = _grid(basis)
    r, theta = np.hypot(x, y) / basis._radius, np.arctan2(y, x)
    nu = basis.complex_frequencies
    psi = special.jv(np.abs(nu), basis.roots * r[..., None]) * np.exp(1j * nu * theta[..., None])
    f = np.where(r < 1, psi @ z, 0.0)
    assert_allclose(f.imag, 0.0, atol=1e-13)
    assert_allclose(f.real, basis.evaluate(coef), rtol=RTOL, atol=1e-13)


def test_from_complex_validates():
    basis = BASES[0]
    with pytest.raises(ValueError, match="n_functions"):
        basis.from_complex(np.ones(9, dtype=complex))
    with pytest.raises(ValueError, match="finite"):
        basis.from_complex(np.full(10, np.nan, dtype=complex))


# --------------------------------------------- evaluate / adjoint / expand
@given(bc=basis_and_coef(n=3), data=st.data())
def test_evaluate_adjoint_identity(bc, data):
    basis, coefs = bc
    L = basis.image_size
    images = data.draw(arrays(np.float64, (3, L, L), elements=finite))
    lhs = np.sum(basis.evaluate(coefs) * images, axis=(-2, -1))
    rhs = np.sum(coefs * basis.evaluate_t(images), axis=-1)
    scale = np.abs(coefs).max() * np.abs(images).max() * L * L * basis.n_functions
    assert_allclose(lhs, rhs, rtol=RTOL, atol=1e-13 * max(scale, 1.0))
    assert basis.evaluate(coefs).shape == (3, L, L)
    assert basis.evaluate_t(images).shape == (3, basis.n_functions)


@given(bc=basis_and_coef(n=2))
def test_expand_inverts_evaluate(bc):
    basis, coefs = bc
    assert_allclose(basis.expand(basis.evaluate(coefs)), coefs, rtol=RTOL, atol=ATOL)


@given(basis=st.sampled_from(BASES), data=st.data())
def test_expand_is_least_squares(basis, data):
    L = basis.image_size
    image = data.draw(arrays(np.float64, (L, L), elements=finite))
    coef = basis.expand(image)
    residual = (image - basis.evaluate(coef))[basis.mask]
    inside = basis.matrix[basis.mask.ravel()]
    # normal equations: the residual inside the disk is orthogonal to the span
    scale = np.abs(image).max() * L * L
    assert_allclose(inside.T @ residual, 0.0, atol=1e-12 * max(scale, 1.0))
    # pixels outside the disk play no part
    outside = image.copy()
    outside[~basis.mask] = 1e3
    assert_allclose(basis.expand(outside), coef, rtol=RTOL, atol=ATOL)


def test_isotropic_image_has_no_low_odd_frequencies():
    # a radial pixel image is invariant under the square's symmetries, so its
    # least-squares expansion has no component with nu not divisible by 4
    basis = FourierBesselBasis(7)
    x, y = _grid(basis)
    coef = basis.expand(np.exp(-(x**2 + y**2) / 4.0))
    assert_allclose(coef[basis.frequencies % 4 != 0], 0.0, atol=1e-12)
    assert np.abs(coef[basis.frequencies == 0]).max() > 0.1


def test_shape_errors():
    basis = BASES[0]
    with pytest.raises(ValueError, match="coef"):
        basis.evaluate(np.ones(11))
    with pytest.raises(ValueError, match="coef"):
        basis.evaluate(np.full(10, np.nan))
    with pytest.raises(ValueError, match="images"):
        basis.evaluate_t(np.ones((4, 4)))
    with pytest.raises(ValueError, match="images"):
        basis.expand(np.ones(5))
    with pytest.raises(TypeError, match="images"):
        basis.expand(np.ones((5, 5), dtype=complex))
    with pytest.raises(ValueError, match="one-dimensional"):
        basis.evaluate_points(np.ones((2, 10)), 0.0, 0.0)


# ------------------------------------------------------ parameter handling
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(image_size=4), ValueError, "image_size"),
    (dict(image_size=5.0), TypeError, "image_size"),
    (dict(image_size=1), ValueError, "image_size"),
    (dict(image_size=True), TypeError, "image_size"),
    (dict(image_size=5, n_coefficients=0), ValueError, "n_coefficients"),
    (dict(image_size=5, n_coefficients=2.5), TypeError, "n_coefficients"),
    (dict(image_size=5, n_coefficients=4, bandlimit=8.0), ValueError, "n_coefficients"),
    (dict(image_size=5, bandlimit=2.0), ValueError, "bandlimit"),
    (dict(image_size=5, bandlimit=np.nan), ValueError, "bandlimit"),
    (dict(image_size=5, radius=0.0), ValueError, "radius"),
    (dict(image_size=5, radius=-1.0), ValueError, "radius"),
])
def test_invalid_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FourierBesselBasis(**kwargs)


def test_get_set_params():
    basis = FourierBesselBasis(5, n_coefficients=10)
    assert basis.get_params() == {"image_size": 5, "n_coefficients": 10,
                                  "bandlimit": None, "radius": None}
    assert basis.set_params(n_coefficients=6) is basis
    assert basis.n_functions == 6  # set_params rebuilds the tables
    assert basis.matrix.shape == (25, 6)
    assert basis == FourierBesselBasis(5, n_coefficients=6)
    basis.set_params(image_size=7, n_coefficients=None)
    assert basis.n_functions == FourierBesselBasis(7).n_functions
    assert basis.mask.shape == (7, 7)
    with pytest.raises(ValueError, match="n_coeficients"):
        basis.set_params(n_coeficients=3)


def test_sklearn_clone():
    from sklearn.base import clone

    basis = FourierBesselBasis(7, bandlimit=10.0, radius=3.5)
    copy = clone(basis)
    assert copy is not basis and copy == basis
    assert_array_equal(copy.matrix, basis.matrix)


@pytest.mark.parametrize("basis", BASES, ids=repr)
def test_pickle_round_trip(basis):
    data = pickle.dumps(basis)
    # cheap to ship to joblib workers: only the parameters are pickled
    assert len(data) < 1000
    copy = pickle.loads(data)
    assert copy == basis
    assert_array_equal(copy.matrix, basis.matrix)
    assert_array_equal(copy.frequencies, basis.frequencies)
    coef = np.linspace(-1, 1, basis.n_functions)
    assert_array_equal(copy.rotate(coef, 0.3), basis.rotate(coef, 0.3))


def test_equality_hash_repr():
    a = FourierBesselBasis(5, n_coefficients=10)
    b = FourierBesselBasis(5, n_coefficients=10)
    assert a == b and hash(a) == hash(b)
    assert a != FourierBesselBasis(5, n_coefficients=6)
    assert a != FourierBesselBasis(5, n_coefficients=10, radius=2.5)
    assert a != "FourierBesselBasis(5)"
    assert repr(a) == "FourierBesselBasis(image_size=5, n_coefficients=10)"
    assert eval(repr(a), {"FourierBesselBasis": FourierBesselBasis}) == a


def test_more_functions_than_pixels_is_an_error():
    with pytest.raises(ValueError, match="only 69 pixels inside the disk"):
        FourierBesselBasis(9, bandlimit=20.0)
    # an absurd band limit (or radius) stops counting early instead of
    # computing Bessel roots for hours
    with pytest.raises(ValueError, match="at least [0-9]+ basis functions but only 69 pixels"):
        FourierBesselBasis(9, bandlimit=1e5)
    with pytest.raises(ValueError, match="at least [0-9]+ basis functions but only 121 pixels"):
        FourierBesselBasis(11, radius=1e4)


def test_n_coefficients_beyond_candidates_is_an_error():
    with pytest.raises(ValueError, match="n_coefficients=11 exceeds the 10 candidate"):
        FourierBesselBasis(5, n_coefficients=11)


def test_set_params_invalid_value_leaves_basis_unchanged():
    basis = FourierBesselBasis(5, n_coefficients=10)
    with pytest.raises(ValueError, match="n_coefficients"):
        basis.set_params(n_coefficients=0)
    assert basis.n_coefficients == 10 and basis.n_functions == 10


# ------------------------------------------ every image size, L = 3 .. 65
# The default basis for realistic particle sizes.  Bounds measured over every
# odd L from 3 to 65 (docs/results.rst has the table): the condition number of
# matrix[mask] is at most 21.1 (L = 45); with unit-norm columns at most 2.59
# (L = 45) for the Nyquist rule (L >= 11) and 6.34 (L = 9) for the paper's
# candidates (L <= 9).  The continuous functions are orthogonal, so with unit
# columns the conditioning measures how far pixel sampling is from that;
# the raw number adds the spread of the functions' norms, which scale like
# lambda**-1/2 (sqrt(lambda_max / lambda_min) = 6.6 at L = 65).  The bounds
# below leave about 20 % of room; the pixel grid is fixed, so the measured
# values move only by rounding.
ALL_SIZES = list(range(3, 67, 2))
FAST_MAX_SIZE = 41  # beyond it the matrix-based checks are marked slow
MAX_COND = 25.0
MAX_UNIT_COND_NYQUIST = 3.0
MAX_UNIT_COND_PAPER = 7.5


def _parity_labels(basis):
    """0..3: the class of each function under x -> -x and y -> -y.

    ``cos(nu theta)`` is even in y and has parity (-1)**nu in x;
    ``sin(nu theta)`` is odd in y and has parity -(-1)**nu in x.
    """
    sin = basis.kinds == 2
    odd = basis.frequencies % 2 == 1
    return 2 * sin + (odd ^ sin)


def _singular_values(inside, labels):
    # functions of different parity classes are orthogonal on the (symmetric)
    # pixel set (test_every_size_parity_classes_orthogonal), so the Gram matrix
    # is block diagonal and its eigenvalues are those of the blocks
    s = [np.linalg.eigvalsh(inside[:, labels == c].T @ inside[:, labels == c])
         for c in range(4) if np.any(labels == c)]
    return np.sqrt(np.concatenate(s))


@pytest.mark.parametrize("L", ALL_SIZES)
def test_default_count_never_exceeds_pixels(L):
    basis = FourierBesselBasis(L)  # no matrix is built: cheap even at L = 65
    n = L // 2
    assert 1 <= basis.n_functions <= basis.mask.sum()
    if L >= 11:
        # the Nyquist band limit pi * radius (test_default_is_nyquist_bandlimit)
        assert basis.roots.max() <= np.pi * (n + 1)
        # Weyl's law: about (pi**2/4) R**2 - (pi/2) R functions, a fraction
        # pi/4 of the disk's pi R**2 pixels
        R = n + 1
        assert abs(basis.n_functions - (np.pi**2 / 4 * R**2 - np.pi / 2 * R)) < 0.05 * R**2
        assert 0.6 < basis.n_functions / basis.mask.sum() < 0.8


@pytest.fixture(scope="module", ids=lambda L: f"L{L}", params=[
    L if L <= FAST_MAX_SIZE else pytest.param(L, marks=pytest.mark.slow) for L in ALL_SIZES])
def sized_basis(request):
    """The default basis of one image size, its matrix built once for all checks."""
    basis = FourierBesselBasis(request.param)
    basis.matrix
    return basis


def test_every_size_parity_classes_orthogonal(sized_basis):
    inside = sized_basis.matrix[sized_basis.mask.ravel()]
    labels = _parity_labels(sized_basis)
    scale = np.linalg.norm(inside, axis=0).max() ** 2
    rng = np.random.default_rng(sized_basis.image_size)
    for a in range(4):
        for b in range(a + 1, 4):
            va = rng.standard_normal(np.sum(labels == a))
            vb = rng.standard_normal(np.sum(labels == b))
            cross = (inside[:, labels == a] @ va) @ (inside[:, labels == b] @ vb)
            assert abs(cross) <= 1e-12 * scale * np.linalg.norm(va) * np.linalg.norm(vb)


def test_every_size_well_conditioned(sized_basis):
    inside = sized_basis.matrix[sized_basis.mask.ravel()]
    labels = _parity_labels(sized_basis)
    s = _singular_values(inside, labels)
    cond = s.max() / s.min()
    assert cond < MAX_COND
    if sized_basis.image_size <= 25:  # the block computation is the plain one
        assert cond == pytest.approx(np.linalg.cond(inside), rel=1e-8)
    unit = _singular_values(inside / np.linalg.norm(inside, axis=0), labels)
    bound = MAX_UNIT_COND_NYQUIST if sized_basis.image_size >= 11 else MAX_UNIT_COND_PAPER
    assert unit.max() / unit.min() < bound


def test_every_size_expand_inverts_evaluate(sized_basis):
    rng = np.random.default_rng(sized_basis.image_size)
    coef = rng.standard_normal((2, sized_basis.n_functions))
    assert_allclose(sized_basis.expand(sized_basis.evaluate(coef)), coef, rtol=0, atol=1e-9)


def test_every_size_steerable(sized_basis):
    # the pixel image of the rotated coefficients is the continuous expansion
    # at the rotated points (checked at 40 random pixels inside the disk)
    basis = sized_basis
    rng = np.random.default_rng(basis.image_size)
    coef = rng.standard_normal(basis.n_functions)
    phi = rng.uniform(-np.pi, np.pi)
    x, y = _grid(basis)
    i, j = np.nonzero(basis.mask)
    pick = rng.choice(i.size, size=min(40, i.size), replace=False)
    i, j = i[pick], j[pick]
    r, theta = np.hypot(x[i, j], y[i, j]), np.arctan2(y[i, j], x[i, j])
    expected = basis.evaluate_points(coef, r * np.cos(theta + phi), r * np.sin(theta + phi))
    assert_allclose(basis.evaluate(basis.rotate(coef, phi))[i, j], expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("L", [11, 45])
def test_default_is_nyquist_bandlimit(L):
    basis = FourierBesselBasis(L)
    reference = FourierBesselBasis(L, bandlimit=np.pi * (L // 2 + 1))
    assert_array_equal(basis.frequencies, reference.frequencies)
    assert_array_equal(basis.radial_indices, reference.radial_indices)
    assert_array_equal(basis.kinds, reference.kinds)


@pytest.mark.parametrize("L", [27, 41, pytest.param(65, marks=pytest.mark.slow)])
def test_large_matrix_matches_jv(L):
    # large images interpolate J_nu(lambda r) from Chebyshev points in r;
    # the matrix must still be jv's values (measured within 6.3e-15 up to L = 65)
    basis = FourierBesselBasis(L)
    x, y = _grid(basis)
    i, j = np.nonzero(basis.mask)
    pick = np.random.default_rng(L).choice(i.size, size=64, replace=False)
    i, j = i[pick], j[pick]
    r, theta = np.hypot(x[i, j], y[i, j]) / basis._radius, np.arctan2(y[i, j], x[i, j])
    nu, kinds = basis.frequencies, basis.kinds
    angular = np.where(kinds == 2, np.sin(nu * theta[:, None]), np.cos(nu * theta[:, None]))
    expected = special.jv(nu, basis.roots * r[:, None]) * angular
    assert_allclose(basis.matrix[i * L + j], expected, rtol=0, atol=1e-14)


def test_chebyshev_radial_values_at_a_node():
    from mtdlearn.basis._fourier_bessel import _chebyshev_size, _radial_values

    nu, lam = np.array([0, 3, 7]), np.array([2.4, 30.0, 40.0])
    n_nodes = _chebyshev_size(lam.max())
    node = (1 + np.cos(np.pi * 0.5 / n_nodes)) / 2  # the first Chebyshev point
    r = np.concatenate([np.linspace(0, 0.99, n_nodes + 20), [node]])  # interpolated
    assert_allclose(_radial_values(nu, lam, r), special.jv(nu, lam * r[:, None]),
                    rtol=0, atol=1e-14)


def test_default_with_other_radius_follows_it():
    # the Nyquist rule uses the radius given: lambda <= pi * radius
    basis = FourierBesselBasis(21, radius=8.5)
    reference = FourierBesselBasis(21, bandlimit=np.pi * 8.5, radius=8.5)
    assert_array_equal(basis.frequencies, reference.frequencies)
    assert_array_equal(basis.radial_indices, reference.radial_indices)
    with pytest.raises(ValueError, match="radius=0.5 is too small"):
        FourierBesselBasis(11, radius=0.5)


@pytest.mark.parametrize("blocks", [False, True], ids=["whole", "blocks"])
def test_rank_deficient_basis_still_expands_like_pinv(blocks, monkeypatch):
    # what the paper's rule keeps at L = 11 (the old default): 105 functions of
    # rank 101.  expand stays the minimum-norm least-squares fit of pinv, with
    # the whole pseudo-inverse (105 <= 128 functions) and with the reflection
    # blocks, whose rank-deficient ones fall back to the SVD
    if blocks:
        monkeypatch.setattr(basis_module, "_FULL_PINV_MAX_FUNCTIONS", 0)
    basis = FourierBesselBasis(11, n_coefficients=105)
    inside = basis.matrix[basis.mask.ravel()]
    assert np.linalg.matrix_rank(inside) == 101
    image = np.random.default_rng(3).uniform(size=(2, 11, 11))
    expected = image[:, basis.mask] @ np.linalg.pinv(inside).T
    assert_allclose(basis.expand(image), expected, rtol=0, atol=1e-10)
    assert isinstance(basis._least_squares(), list) == blocks


def test_small_bases_expand_with_the_whole_pseudo_inverse():
    # up to 128 functions expand is pinv of the whole matrix, bit for bit the
    # arithmetic of earlier versions (the regression pins depend on it)
    basis = FourierBesselBasis(5, n_coefficients=10)
    image = np.random.default_rng(4).uniform(size=(5, 5))
    expected = image[basis.mask] @ np.linalg.pinv(basis.matrix[basis.mask.ravel()]).T
    assert_array_equal(basis.expand(image), expected)


@pytest.mark.parametrize("L", [15, 31])
def test_reflection_blocks_expand_like_pinv(L):
    # beyond 128 functions expand solves the four parity blocks; it is still
    # the least-squares fit of pinv of the whole matrix
    basis = FourierBesselBasis(L)
    assert basis.n_functions > basis_module._FULL_PINV_MAX_FUNCTIONS
    inside = basis.matrix[basis.mask.ravel()]
    image = np.random.default_rng(L).uniform(size=(3, L, L))
    expected = image[:, basis.mask] @ np.linalg.pinv(inside).T
    assert_allclose(basis.expand(image), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    assert basis.expand(image[0]).shape == (basis.n_functions,)


def test_large_basis_pickles_cheaply():
    basis = FourierBesselBasis(31)
    coef = np.linspace(-1, 1, basis.n_functions)
    image = basis.evaluate(coef)  # builds the matrix
    basis.expand(image)  # and the least-squares factors
    data = pickle.dumps(basis)
    assert len(data) < 1000  # parameters only
    copy = pickle.loads(data)
    assert copy == basis and copy._matrix is None
    assert_array_equal(copy.matrix, basis.matrix)
    assert_allclose(copy.expand(image), basis.expand(image), rtol=0, atol=0)


def test_rotated_evaluation_is_the_rotated_images():
    """``rotated_evaluation(basis, angles)[k] @ coef`` is the image of
    ``rotate(coef, angles[k])``, for several angles and a scalar angle."""
    from mtdlearn.basis.protocol import rotated_evaluation

    basis = FourierBesselBasis(9)
    coef = np.random.default_rng(1).standard_normal(basis.n_functions)
    angles = np.array([0.0, 0.4, 2.0, -1.3])
    BR = rotated_evaluation(basis, angles)
    assert BR.shape == (4, 81, basis.n_functions)
    for k, phi in enumerate(angles):
        expected = basis.evaluate(basis.rotate(coef, phi)).ravel()
        np.testing.assert_allclose(BR[k] @ coef, expected, rtol=0,
                                   atol=1e-12 * np.abs(expected).max())
    assert rotated_evaluation(basis, 0.4).shape == (1, 81, basis.n_functions)
