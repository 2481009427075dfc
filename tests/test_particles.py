"""Tests of the particle-like target generator :func:`mtdlearn.make_particle`.

Measured numbers behind the tolerances (300 seeds each, default basis
``FourierBesselBasis(L)``, ``atom_std=1``, diameters ``0.3 L``, ``0.65 L``
(the default) and ``0.9 L``):

* expansion error ``||evaluate(coef) - image|| / ||image||`` over the whole
  ``L x L`` image, at the default diameter: at most 4.0e-3 (median 2.3e-3)
  at L = 11, at most 2.7e-3 (median 1.8e-3) at L = 21.  Tolerance 1e-2.
  (At 0.9 L the atoms' tails leave the disk the basis fits: up to 4.9e-2 at
  L = 11, 8.7e-3 at L = 21; not tested.)
* energy outside the disk of radius ``diameter / 2 + 2`` px: at most 1.2e-4
  (pixel image) and 1.0e-4 (rendered image).  A 2-D Gaussian of standard
  deviation ``s`` squared is a Gaussian of standard deviation ``s / sqrt(2)``,
  so a single atom leaves ``exp(-(m / s)**2)`` of its energy beyond ``m`` px
  of its centre: 1.8e-2 at ``m = 2 s``, and that only for an atom on the
  ball's surface, while most of the energy is the coherent sum at the centre.
  Tolerance 1e-3.
* spectrum: mean power of the rendered image at ``|k| >= 1/3`` cycles/px over
  its mean power at ``|k| < 1.5 / L`` (the DC term and the first ring): at
  most 2.6e-4.  The atoms' envelope gives ``exp(-4 pi**2 s**2 k**2) <= 1.25e-2``
  there, and the atoms add incoherently at high frequency (power ``~ n``)
  but coherently at low (``~ n**2``, ``n >= 40``): ``~ 1.25e-2 / 40 = 3e-4``.
  Tolerance 1e-3.  ``make_target``'s white-noise pixels give 4e-3 to 7e-3 at
  L = 21 (their mean, 1/2, fills the lowest ring; without it the ratio would
  be ~1), the default particle about 4e-5.
* positive mean: ``sum(F) / (||F|| sqrt(pi) diameter / 2)`` (1 for a flat
  disk of that diameter) at least 0.83.  Tolerance 0.5.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from mtdlearn import FourierBesselBasis, make_particle, make_target
from mtdlearn.data import particles
from mtdlearn.data.simulate import make_measurement

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

BASES = {11: FourierBesselBasis(11), 21: FourierBesselBasis(21)}

sizes = st.sampled_from(sorted(BASES))
seeds = st.integers(0, 2**32 - 1)
fractions = st.floats(0.3, 0.9)

EXPANSION_RTOL = 1e-2
OUTSIDE_TOL = 1e-3
SPECTRUM_TOL = 1e-3


def _radius_map(L):
    n = L // 2
    rows, cols = np.mgrid[:L, :L]
    return np.hypot(rows - n, cols - n)


def _spectrum_ratio(F):
    """Mean power at ``|k| >= 1/3`` over mean power at ``|k| < 1.5 / L``."""
    L = F.shape[0]
    power = np.abs(np.fft.fft2(F)) ** 2
    k = np.fft.fftfreq(L)
    K = np.hypot(*np.meshgrid(k, k))
    return power[K >= 1 / 3].mean() / power[K < 1.5 / L].mean()


# -- the model --------------------------------------------------------------
@given(L=sizes, fraction=fractions, seed=seeds)
def test_support_is_the_ball(L, fraction, seed):
    basis = BASES[L]
    diameter = fraction * L
    coef, image = make_particle(basis, diameter, random_state=seed, return_image=True)
    outside = _radius_map(L) > diameter / 2 + 2
    for F in (image, basis.evaluate(coef)):
        assert np.sum(F[outside] ** 2) <= OUTSIDE_TOL * np.sum(F ** 2)


@given(L=sizes, fraction=fractions, seed=seeds)
def test_spectrum_decays(L, fraction, seed):
    basis = BASES[L]
    F = basis.evaluate(make_particle(basis, fraction * L, random_state=seed))
    assert _spectrum_ratio(F) < SPECTRUM_TOL


def test_spectrum_decays_unlike_make_target():
    # the contrast the generator is for: make_target's pixels are white noise
    basis = BASES[21]
    flat = _spectrum_ratio(basis.evaluate(make_target(basis, random_state=0)))
    particle = _spectrum_ratio(basis.evaluate(make_particle(basis, random_state=0)))
    assert particle < SPECTRUM_TOL < flat
    assert flat > 30 * particle


@given(L=sizes, fraction=fractions, seed=seeds)
def test_positive_mean(L, fraction, seed):
    basis = BASES[L]
    diameter = fraction * L
    coef, image = make_particle(basis, diameter, random_state=seed, return_image=True)
    F = basis.evaluate(coef)
    assert np.all(image > 0)
    assert F.sum() > 0.5 * np.sqrt(np.pi) * diameter / 2 * np.linalg.norm(F)
    assert F.min() > -1e-2 * F.max()  # ringing of the expansion only


@given(L=sizes, norm=st.floats(1e-3, 1e3), seed=seeds)
def test_norm_of_rendered_image(L, norm, seed):
    basis = BASES[L]
    coef, image = make_particle(basis, norm=norm, random_state=seed, return_image=True)
    assert_allclose(np.linalg.norm(basis.evaluate(coef)), norm, rtol=1e-12)
    # the pixel image is scaled by the same factor: coef is its expansion
    assert_allclose(basis.expand(image), coef, rtol=1e-10, atol=1e-10 * norm)


@pytest.mark.parametrize("L", sorted(BASES))
@given(seed=seeds)
def test_expansion_matches_the_image(L, seed):
    basis = BASES[L]
    coef, image = make_particle(basis, random_state=seed, return_image=True)
    error = np.linalg.norm(basis.evaluate(coef) - image) / np.linalg.norm(image)
    assert error < EXPANSION_RTOL


@given(std=st.floats(0.5, 2.0))
def test_single_atom_is_a_centred_gaussian(std):
    L = 11
    n = L // 2
    _, image = make_particle(BASES[L], 1e-9, n_atoms=1, atom_std=std, random_state=0,
                             return_image=True)
    expected = np.exp(-_radius_map(L) ** 2 / (2 * std ** 2))
    assert_allclose(image / image[n, n], expected, rtol=1e-7, atol=1e-12)


def test_positions_uniform_in_ball():
    rng = np.random.default_rng(0)
    radius = 3.0
    points = particles._positions_in_ball(rng, 20000, radius)
    r = np.linalg.norm(points, axis=1) / radius
    assert points.shape == (20000, 3) and r.max() <= 1
    # r / R has density 3 r**2: mean 3/4, P(r < 1/2) = 1/8 (std errors 1.4e-3
    # and 2.3e-3); each coordinate has mean 0 (std error 3e-3 R)
    assert abs(r.mean() - 0.75) < 1e-2
    assert abs(np.mean(r < 0.5) - 0.125) < 1e-2
    assert np.all(np.abs(points.mean(axis=0)) < 1.5e-2 * radius)


def test_centred_on_the_centre_pixel():
    L = 11
    n = L // 2
    images = [make_particle(BASES[L], random_state=s, return_image=True)[1]
              for s in range(40)]
    mean = sum(image / image.sum() for image in images) / len(images)
    rows, cols = np.mgrid[:L, :L]
    # one particle's centroid has std ~ (d / 2) / sqrt(5 n_atoms) = 0.25 px
    assert abs(np.sum(rows * mean) - n) < 0.15
    assert abs(np.sum(cols * mean) - n) < 0.15


def test_defaults():
    basis = BASES[21]
    diameter = 0.65 * 21
    n_atoms = round(0.1 * np.pi * diameter ** 3 / 6)
    assert n_atoms == 133
    assert_array_equal(make_particle(basis, random_state=3),
                       make_particle(basis, diameter, n_atoms=n_atoms, random_state=3))
    # few atoms in a small ball: at least 40
    assert_array_equal(make_particle(basis, 2.0, random_state=3),
                       make_particle(basis, 2.0, n_atoms=40, random_state=3))


def test_default_diameter_follows_a_small_disk():
    basis = FourierBesselBasis(11, radius=4.0)
    assert_array_equal(make_particle(basis, random_state=1),
                       make_particle(basis, 0.65 * 8.0, random_state=1))
    make_particle(basis, 8.0, random_state=1)
    with pytest.raises(ValueError, match="diameter must be <= 8"):
        make_particle(basis, 8.5)


# -- randomness -------------------------------------------------------------
def test_reproducible_and_seeds_differ():
    basis = BASES[11]
    a = make_particle(basis, random_state=7)
    assert_array_equal(a, make_particle(basis, random_state=7))
    assert_array_equal(a, make_particle(basis, random_state=np.random.default_rng(7)))
    assert not np.allclose(a, make_particle(basis, random_state=8))
    r1 = make_particle(basis, random_state=np.random.RandomState(5))
    assert_array_equal(r1, make_particle(basis, random_state=np.random.RandomState(5)))
    rng = np.random.default_rng(0)
    assert not np.allclose(make_particle(basis, random_state=rng),
                           make_particle(basis, random_state=rng))


def test_usable_as_a_target():
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_particle(basis, random_state=0)
    assert coef.shape == (10,)
    X, _ = make_measurement(coef, basis, 40, snr=10, random_state=0)
    assert X.shape == (40, 40)


# -- bad inputs -------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"diameter": 0}, ValueError, "diameter"),
    ({"diameter": -1.0}, ValueError, "diameter"),
    ({"diameter": 12.5}, ValueError, "diameter must be <= 12"),
    ({"diameter": float("nan")}, ValueError, "diameter"),
    ({"diameter": float("inf")}, ValueError, "diameter"),
    ({"diameter": "5"}, TypeError, "diameter"),
    ({"diameter": True}, TypeError, "diameter"),
    ({"diameter": [5.0]}, TypeError, "diameter"),
    ({"n_atoms": 0}, ValueError, "n_atoms"),
    ({"n_atoms": 2.5}, TypeError, "n_atoms"),
    ({"atom_std": 0.0}, ValueError, "atom_std"),
    ({"atom_std": "1"}, TypeError, "atom_std"),
    ({"norm": -1.0}, ValueError, "norm"),
    ({"norm": None}, TypeError, "norm"),
    ({"return_image": "yes"}, TypeError, "return_image"),
    ({"random_state": -1}, ValueError, "random_state"),
    ({"random_state": "seed"}, TypeError, "random_state"),
])
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_particle(BASES[11], **kwargs)


def test_bad_basis():
    with pytest.raises(TypeError, match="basis"):
        make_particle(object())
