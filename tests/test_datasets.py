"""Tests of the simulator (paper eq. 1 and §3; DESIGN.md §2: SNR, density,
separation).

Statistical checks use a fixed seed and a 5-standard-deviation tolerance, so
they are deterministic and would fail with probability < 1e-6 for another seed.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial import cKDTree

from mtdlearn import FourierBesselBasis
from mtdlearn.data.simulate import (MeasurementTruth, make_measurement, make_target, place_copies,
                                    render_copies, snr_to_noise_variance)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

BASIS = FourierBesselBasis(5, n_coefficients=10)
L = 5


@pytest.fixture(scope="module")
def coef():
    return make_target(BASIS, random_state=0)


def assert_separated(positions, L):
    """Pairwise Chebyshev distance of top-left corners >= 2L - 1 (KD-tree)."""
    tree = cKDTree(positions)
    assert len(tree.query_pairs(2 * L - 2, p=np.inf)) == 0


# -------------------------------------------------------------- make_target
def test_make_target_is_expanded_norm_10_image():
    coef = make_target(BASIS, random_state=7)
    rng = np.random.default_rng(7)
    image = rng.uniform(0.0, 1.0, size=(L, L))
    image *= 10.0 / np.linalg.norm(image)
    # two norms of 25 positive squares (a BLAS dot, summed in a CPU-dependent
    # order: < 25 * 2**-53 relative each) and a scaling: L*L*eps bounds it
    assert np.linalg.norm(image) == pytest.approx(10.0, rel=L * L * np.finfo(float).eps)
    assert_allclose(coef, BASIS.expand(image), rtol=1e-12, atol=1e-12)
    # expand was applied: the image is projected on the 10-dimensional span,
    # so it changes and its norm shrinks
    F = BASIS.evaluate(coef)
    assert np.linalg.norm(F - image) > 0.1
    assert np.linalg.norm(F) < 10.0
    assert_allclose(BASIS.expand(F), coef, rtol=1e-10, atol=1e-10)


def test_make_target_reproducible_and_scaled():
    a = make_target(BASIS, random_state=1)
    assert_array_equal(a, make_target(BASIS, random_state=1))
    assert_array_equal(a, make_target(BASIS, random_state=np.random.default_rng(1)))
    assert not np.allclose(a, make_target(BASIS, random_state=2))
    assert_allclose(make_target(BASIS, norm=3.0, random_state=1), 0.3 * a, rtol=1e-12)
    other = FourierBesselBasis(7)
    assert make_target(other, random_state=0).shape == (other.n_functions,)


def test_make_target_errors():
    with pytest.raises(TypeError, match="basis"):
        make_target("basis")
    with pytest.raises(ValueError, match="norm"):
        make_target(BASIS, norm=0.0)
    with pytest.raises(ValueError, match="random_state"):
        make_target(BASIS, random_state=-1)


# ---------------------------------------------------------- make_measurement
def test_placement_separation_and_density(coef):
    N = 1000
    X, truth = make_measurement(coef, BASIS, N, density=0.04, random_state=1)
    pos = truth.positions
    assert X.shape == (N, N)
    assert pos.dtype.kind == "i" and pos.shape == (truth.n_copies, 2)
    # all copies inside
    assert pos.min() >= 0 and pos.max() <= N - L
    assert_separated(pos, L)
    # ... and the bound is tight (no larger separation than required)
    assert len(cKDTree(pos).query_pairs(2 * L - 1, p=np.inf)) > 0
    # density: round(0.04 * N**2 / L**2) = 1600 copies, all placed
    assert truth.n_copies == 1600
    assert truth.density == pytest.approx(truth.n_copies * L**2 / N**2, rel=1e-15)
    assert truth.density == pytest.approx(0.04, abs=L**2 / N**2)
    # corners uniform on [0, N - L]: mean within 5 standard errors of the centre
    se = (N - L + 1) / np.sqrt(12 * truth.n_copies)
    assert np.all(np.abs(pos.mean(axis=0) - (N - L) / 2) < 5 * se)
    assert truth.angles.shape == (truth.n_copies,)
    assert np.all((truth.angles >= 0) & (truth.angles < 2 * np.pi))
    assert_array_equal(truth.measurement, 0)


def test_copies_are_rotated_images(coef):
    X, truth = make_measurement(coef, BASIS, (150, 130), density=0.04, random_state=2)
    assert X.shape == (150, 130) and truth.shape == (150, 130)
    clean = truth.clean
    assert clean is truth.clean  # rendered once
    assert_array_equal(X, clean)  # noise-free by default
    assert truth.noise_variance == 0.0
    covered = np.zeros(clean.shape, dtype=bool)
    for (r, c), phi in zip(truth.positions, truth.angles):
        expected = BASIS.evaluate(BASIS.rotate(coef, phi))
        assert_allclose(clean[r:r + L, c:c + L], expected, rtol=0, atol=1e-12)
        covered[r:r + L, c:c + L] = True
    assert np.all(clean[~covered] == 0.0)
    assert truth.n_copies > 0


def test_snr_sets_noise_variance(coef):
    N, snr = 400, 5.0
    X, truth = make_measurement(coef, BASIS, N, snr=snr, random_state=3)
    F = BASIS.evaluate(coef)
    expected = np.sum(F**2) / (L**2 * snr)
    assert truth.noise_variance == pytest.approx(expected, rel=1e-12)
    assert snr_to_noise_variance(coef, BASIS, snr) == pytest.approx(expected, rel=1e-12)
    noise = (X - truth.clean).ravel()
    n = noise.size
    # sample variance of n Gaussian values: standard deviation sigma^2 sqrt(2 / (n - 1))
    assert np.var(noise) == pytest.approx(expected, rel=5 * np.sqrt(2 / (n - 1)))
    assert abs(noise.mean()) < 5 * np.sqrt(expected / n)
    # white: the lag-one correlation along rows is ~ N(0, 1/n)
    rows = (X - truth.clean)
    corr = np.mean(rows[:, 1:] * rows[:, :-1]) / expected
    assert abs(corr) < 5 / np.sqrt(n)


def test_explicit_noise_variance(coef):
    X, truth = make_measurement(coef, BASIS, 300, noise_variance=2.0, random_state=4)
    assert truth.noise_variance == 2.0
    noise = (X - truth.clean).ravel()
    assert np.var(noise) == pytest.approx(2.0, rel=5 * np.sqrt(2 / (noise.size - 1)))
    X0, truth0 = make_measurement(coef, BASIS, 100, noise_variance=0.0, random_state=4)
    assert_array_equal(X0, truth0.clean)


def test_zero_density_is_pure_noise(coef):
    X, truth = make_measurement(coef, BASIS, 50, density=0.0, snr=1.0, random_state=0)
    assert truth.n_copies == 0 and truth.density == 0.0
    assert np.all(truth.clean == 0.0)
    assert np.all(X != 0.0)


def test_stack_of_measurements(coef):
    X, truth = make_measurement(coef, BASIS, 100, snr=2.0, n_measurements=3, random_state=5)
    assert X.shape == (3, 100, 100)
    assert truth.shape == (3, 100, 100)
    assert truth.clean.shape == (3, 100, 100)
    target = round(0.04 * 100 * 100 / L**2)
    assert_array_equal(np.bincount(truth.measurement, minlength=3), [target] * 3)
    assert truth.density == pytest.approx(0.04)
    for i in range(3):
        mine = truth.measurement == i
        assert_separated(truth.positions[mine], L)
        for (r, c), phi in zip(truth.positions[mine], truth.angles[mine]):
            assert_allclose(truth.clean[i, r:r + L, c:c + L],
                            BASIS.evaluate(BASIS.rotate(coef, phi)), rtol=0, atol=1e-12)
    # the measurements differ
    assert not np.allclose(X[0], X[1])
    X1, _ = make_measurement(coef, BASIS, 100, n_measurements=1, random_state=5)
    assert X1.shape == (1, 100, 100)


def test_impossible_density_warns(coef):
    with pytest.warns(RuntimeWarning, match="density reached"):
        X, truth = make_measurement(coef, BASIS, 100, density=0.9, random_state=6)
    assert 0 < truth.density < 0.9
    assert truth.density == pytest.approx(truth.n_copies * L**2 / 100**2)
    assert_separated(truth.positions, L)
    # the hard limit of the separation: one copy per (2L-1) x (2L-1) cell
    assert truth.density <= L**2 / (2 * L - 1) ** 2 * (1 + (2 * L - 1) / 100) ** 2


def test_reproducible(coef):
    kw = dict(density=0.04, snr=3.0)
    X1, t1 = make_measurement(coef, BASIS, 120, random_state=11, **kw)
    X2, t2 = make_measurement(coef, BASIS, 120, random_state=11, **kw)
    assert_array_equal(X1, X2)
    assert_array_equal(t1.positions, t2.positions)
    assert_array_equal(t1.angles, t2.angles)
    X3, t3 = make_measurement(coef, BASIS, 120, random_state=12, **kw)
    assert not np.array_equal(X1, X3)
    X4, _ = make_measurement(coef, BASIS, 120, random_state=np.random.RandomState(0), **kw)
    X5, _ = make_measurement(coef, BASIS, 120, random_state=np.random.RandomState(0), **kw)
    assert_array_equal(X4, X5)


def test_truth_records_inputs(coef):
    _, truth = make_measurement(coef, BASIS, 60, random_state=0)
    assert isinstance(truth, MeasurementTruth)
    assert truth.basis is BASIS
    assert_array_equal(truth.coef, coef)
    assert truth.coef is not coef


def test_place_copies_directly():
    rng = np.random.default_rng(0)
    pos = place_copies((200, 300), 7, 100, rng)
    assert pos.shape == (100, 2)
    assert_separated(pos, 7)
    assert pos[:, 0].max() <= 200 - 7 and pos[:, 1].max() <= 300 - 7
    assert place_copies((200, 300), 7, 0, rng).shape == (0, 2)
    assert place_copies((5, 300), 7, 10, rng).shape == (0, 2)
    # an image that fits once only
    assert place_copies((7, 7), 7, 3, rng).shape == (1, 2)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(coef=np.full(10, np.nan)), ValueError, "coef"),
    (dict(coef=np.ones(9)), ValueError, "coef"),
    (dict(coef=np.ones((2, 9))), ValueError, "coef"),
    (dict(coef=np.ones((0, 10))), ValueError, "coef"),
    (dict(coef=np.ones((2, 2, 10))), ValueError, "coef"),
    (dict(coef=np.ones(())), ValueError, "coef"),
    (dict(coef=np.ones(10, dtype=complex)), TypeError, "coef"),
    (dict(basis=None), TypeError, "basis"),
    (dict(size=4), ValueError, "size"),
    (dict(size=(100, 3)), ValueError, "size"),
    (dict(size=100.0), TypeError, "size"),
    (dict(size=(10, 10, 10)), ValueError, "size"),
    (dict(density=-0.1), ValueError, "density"),
    (dict(density=1.0), ValueError, "density"),
    (dict(density=np.nan), ValueError, "density"),
    (dict(noise_variance=-1.0), ValueError, "noise_variance"),
    (dict(snr=0.0), ValueError, "snr"),
    (dict(snr=-1.0), ValueError, "snr"),
    (dict(snr=1.0, noise_variance=1.0), ValueError, "snr and noise_variance"),
    (dict(n_measurements=0), ValueError, "n_measurements"),
    (dict(n_measurements=2.0), TypeError, "n_measurements"),
    (dict(random_state="seed"), TypeError, "random_state"),
])
def test_make_measurement_errors(coef, kwargs, exc, match):
    args = dict(coef=coef, basis=BASIS, size=50)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        make_measurement(**args)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(image_size=4), ValueError),
    (dict(image_size=5.0), TypeError),
    (dict(image_size="5"), TypeError),
])
def test_basis_image_size_errors(kwargs, exc):
    with pytest.raises(exc, match="image_size"):
        FourierBesselBasis(**kwargs)


def test_a_microscope_measurement_is_the_ctf_of_the_copies_plus_colored_noise():
    from mtdlearn import make_particle
    from mtdlearn.imaging.ctf import CTF
    from mtdlearn.imaging.noise import estimate_noise_psd, make_noise_psd

    basis = FourierBesselBasis(11)
    coef = make_particle(basis, random_state=0)
    ctfs = [CTF(8000.0, pixel_size=3.0), CTF(20000.0, pixel_size=3.0)]
    psd = make_noise_psd(4.0)
    X, truth = make_measurement(coef, basis, 256, density=0.05, snr=2, n_measurements=2,
                                random_state=0, ctf=ctfs, noise_psd=psd)
    clean, _ = make_measurement(coef, basis, 256, density=0.05, n_measurements=2,
                                random_state=0)
    # the same positions and angles; each micrograph's copies through its own CTF
    for i, ctf in enumerate(ctfs):
        formed = np.fft.irfft2(np.fft.rfft2(clean[i]) * ctf.evaluate((256, 256), rfft=True),
                               s=(256, 256))
        np.testing.assert_allclose(truth.clean[i], formed, atol=1e-12)
        noise = X[i] - formed
        # colored noise of mean power sigma**2: 65536 samples of a variance
        # whose relative standard error is ~1 %; 4x more power at low frequency
        assert abs(noise.var() / truth.noise_variance - 1) < 0.05
        spectrum = estimate_noise_psd(noise)
        assert spectrum.values[0] > 2.5 * spectrum.values[-1]
    with pytest.raises(ValueError, match="not both"):
        make_measurement(coef, basis, 64, ctf=ctfs[0], formation=truth.formations[0])
    with pytest.raises(TypeError, match="noise_psd must be a RadialPSD"):
        make_measurement(coef, basis, 64, noise_psd=4.0)
    with pytest.raises(ValueError, match="ctf has 3 entries"):
        make_measurement(coef, basis, 64, ctf=ctfs + ctfs[:1], n_measurements=2)


# ------------------------------------------------------------------ mixtures
@pytest.fixture(scope="module")
def coefs(coef):
    """Two kinds of particle of different powers (the second ~4x the first)."""
    return np.stack([coef, 2.0 * make_target(BASIS, random_state=1)])


def covered_by(positions, shape):
    """Pixels of an (N1, N2) measurement covered by a copy at one of ``positions``."""
    covered = np.zeros(shape, dtype=bool)
    for r, c in positions:
        covered[r:r + L, c:c + L] = True
    return covered


def test_one_dimensional_coef_has_no_component_and_one_row_is_the_same(coef):
    kw = dict(snr=2.0, n_measurements=2, random_state=8)
    X, truth = make_measurement(coef, BASIS, 120, **kw)
    assert truth.component is None and truth.weights is None
    X2, _ = make_measurement(coef, BASIS, 120, **kw)
    assert_array_equal(X, X2)
    # one kind with abundance 1: the kinds are drawn last, so every earlier
    # draw and every rendered copy is that of the 1-D call -- bit-identical
    X1, truth1 = make_measurement(coef[None], BASIS, 120, **kw)
    assert_array_equal(X1, X)
    assert_array_equal(truth1.clean, truth.clean)
    assert_array_equal(truth1.positions, truth.positions)
    assert_array_equal(truth1.angles, truth.angles)
    assert truth1.noise_variance == truth.noise_variance
    assert truth1.coef.shape == (1, BASIS.n_functions)
    assert_array_equal(truth1.coef[0], coef)
    assert truth1.component.shape == (truth1.n_copies,)
    assert_array_equal(truth1.component, 0)
    assert_array_equal(truth1.weights, [1.0])


def test_mixture_shares_positions_angles_and_noise_with_a_one_dimensional_call(coef, coefs):
    kw = dict(noise_variance=0.5, random_state=9)
    X, truth = make_measurement(coef, BASIS, 150, **kw)
    Xm, truthm = make_measurement(coefs, BASIS, 150, **kw)
    assert_array_equal(truthm.positions, truth.positions)
    assert_array_equal(truthm.angles, truth.angles)
    assert_array_equal(truthm.measurement, truth.measurement)
    # the noise too: off the copies both measurements are the same noise
    off = ~covered_by(truth.positions, X.shape)
    assert_array_equal(Xm[off], X[off])
    # both kinds occur and their copies differ from the 1-D call's
    assert set(np.unique(truthm.component)) == {0, 1}
    assert not np.array_equal(Xm, X)


def test_kinds_are_drawn_from_the_weights(coefs):
    weights = (0.3, 0.7)
    _, truth = make_measurement(coefs, BASIS, 300, n_measurements=20, weights=weights,
                                random_state=10)
    n = truth.n_copies
    assert n == 20 * round(0.04 * 300**2 / L**2)  # 2880 copies
    assert truth.component.shape == (n,) and truth.component.dtype.kind == "i"
    counts = np.bincount(truth.component, minlength=2)
    assert counts.size == 2
    # the count of kind 1 is Binomial(n, 0.7): 5 standard deviations
    assert abs(counts[1] - 0.7 * n) < 5 * np.sqrt(n * 0.3 * 0.7)
    assert_array_equal(truth.weights, weights)
    # both measurements hold both kinds
    for i in range(2):
        assert set(np.unique(truth.component[truth.measurement == i])) == {0, 1}
    # a kind of abundance 0 never occurs; None means equal abundances
    three = np.concatenate([coefs, coefs[:1]])
    _, truth0 = make_measurement(three, BASIS, 200, weights=[0.5, 0.0, 0.5], random_state=0)
    assert 1 not in truth0.component and set(np.unique(truth0.component)) == {0, 2}
    _, truth_eq = make_measurement(three, BASIS, 60, random_state=0)
    assert_allclose(truth_eq.weights, [1 / 3] * 3, rtol=1e-15)


def test_mixture_clean_renders_each_copy_with_its_own_kind(coefs):
    X, truth = make_measurement(coefs, BASIS, 150, weights=[0.4, 0.6], random_state=12)
    assert_array_equal(X, truth.clean)  # noise-free
    assert truth.coef.shape == coefs.shape and truth.coef is not coefs
    assert_array_equal(truth.coef, coefs)
    # by hand: each kind's copies rendered with its own coefficients
    expected = np.zeros((1,) + X.shape)
    zeros = np.zeros(truth.n_copies, dtype=np.int64)
    for k in range(2):
        mine = truth.component == k
        assert mine.any()
        render_copies(expected, coefs[k], BASIS, truth.positions[mine], truth.angles[mine],
                      zeros[mine])
    # the copies do not overlap, so each pixel is one copy's value: a sum of
    # p = 10 products, the same on both sides up to rounding
    assert_allclose(truth.clean, expected[0], rtol=0, atol=1e-12)
    # and pixel by pixel, each copy is its kind's rotated image
    for (r, c), phi, k in zip(truth.positions, truth.angles, truth.component):
        assert_allclose(truth.clean[r:r + L, c:c + L],
                        BASIS.evaluate(BASIS.rotate(coefs[k], phi)), rtol=0, atol=1e-12)
    assert np.all(truth.clean[~covered_by(truth.positions, X.shape)] == 0.0)


def test_mixture_snr_is_the_weighted_mean_power(coef, coefs):
    weights = np.array([0.3, 0.7])
    snr = 2.5
    powers = [np.sum(BASIS.evaluate(c) ** 2) for c in coefs]
    assert powers[1] > 2 * powers[0]  # the two kinds' powers differ markedly
    expected = (weights[0] * powers[0] + weights[1] * powers[1]) / (L**2 * snr)
    X, truth = make_measurement(coefs, BASIS, 300, snr=snr, weights=weights, random_state=13)
    # the same few float operations in another order: a few ulps
    assert truth.noise_variance == pytest.approx(expected, rel=1e-12)
    assert snr_to_noise_variance(coefs, BASIS, snr, weights=weights) == pytest.approx(
        expected, rel=1e-12)
    assert snr_to_noise_variance(coefs, BASIS, snr) == pytest.approx(
        (powers[0] + powers[1]) / 2 / (L**2 * snr), rel=1e-12)
    # one row of weight 1 is the 1-D definition, exactly (1.0 * power)
    assert snr_to_noise_variance(coef[None], BASIS, snr) == snr_to_noise_variance(coef, BASIS, snr)
    # the noise drawn has that variance: sample variance of n values, 5 standard deviations
    noise = (X - truth.clean).ravel()
    assert np.var(noise) == pytest.approx(expected, rel=5 * np.sqrt(2 / (noise.size - 1)))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(weights=[0.5, 0.5]), ValueError, "weights"),             # with a 1-D coef
    (dict(coef="2d", weights=[1.0]), ValueError, "weights"),         # wrong length
    (dict(coef="2d", weights=[0.2, 0.3, 0.5]), ValueError, "weights"),
    (dict(coef="2d", weights=[0.5, 0.4]), ValueError, "weights must sum to 1"),
    (dict(coef="2d", weights=[0.5, 0.5 + 1e-7]), ValueError, "weights must sum to 1"),
    (dict(coef="2d", weights=[-0.2, 1.2]), ValueError, "weights must be non-negative"),
    (dict(coef="2d", weights=[np.nan, 1.0]), ValueError, "weights"),
    (dict(coef="2d", weights=[[0.5, 0.5]]), ValueError, "weights"),
    (dict(coef="2d", weights=0.5), ValueError, "weights"),
    (dict(coef="2d", weights=["a", "b"]), TypeError, "weights"),
    (dict(coef=np.ones((2, 11))), ValueError, "coef"),
    (dict(coef=np.ones((1, 1, 10))), ValueError, "coef"),
    (dict(coef=np.zeros((2, 10)), snr=1.0), ValueError, "zero weighted mean power"),
])
def test_mixture_errors(coef, coefs, kwargs, exc, match):
    args = dict(coef=coef, basis=BASIS, size=50)
    args.update(kwargs)
    if isinstance(args["coef"], str):
        args["coef"] = coefs
    with pytest.raises(exc, match=match):
        make_measurement(**args)
    if "weights" in kwargs or "snr" in kwargs:   # the same checks in snr_to_noise_variance
        with pytest.raises(exc, match=match):
            snr_to_noise_variance(args["coef"], BASIS, 1.0, weights=args.get("weights"))


def test_weights_within_tolerance_are_kept_as_given(coefs):
    weights = np.array([0.5, 0.5 + 5e-9])   # sums to 1 within 1e-8: accepted, not renormalized
    _, truth = make_measurement(coefs, BASIS, 60, weights=weights, random_state=0)
    assert_array_equal(truth.weights, weights)
    assert truth.weights is not weights


def test_mixture_with_several_measurements_and_a_ctf(coefs):
    from mtdlearn.imaging.ctf import CTF
    from mtdlearn.imaging.noise import make_noise_psd

    ctf = CTF(10000.0, pixel_size=3.0)
    N = 100
    X, truth = make_measurement(coefs, BASIS, N, snr=3.0, n_measurements=2, weights=[0.3, 0.7],
                                ctf=ctf, random_state=14)
    assert X.shape == (2, N, N) and truth.clean.shape == (2, N, N)
    assert truth.component.shape == truth.measurement.shape == (truth.n_copies,)
    assert_array_equal(np.bincount(truth.measurement), [round(0.04 * N**2 / L**2)] * 2)
    assert len(truth.formations) == 2
    for i in range(2):
        mine = truth.measurement == i
        assert set(np.unique(truth.component[mine])) == {0, 1}
        # each measurement: the CTF applied to the sum of its copies, each of its own kind
        raw = np.zeros((1, N, N))
        for k in range(2):
            sel = mine & (truth.component == k)
            render_copies(raw, coefs[k], BASIS, truth.positions[sel], truth.angles[sel],
                          np.zeros(int(sel.sum()), dtype=np.int64))
        formed = np.fft.irfft2(np.fft.rfft2(raw[0]) * ctf.evaluate((N, N), rfft=True), s=(N, N))
        # two FFTs of a 100x100 image of magnitude ~1: rounding ~1e-15
        assert_allclose(truth.clean[i], formed, rtol=0, atol=1e-12)
    # a colored noise and an explicit formation work too
    X2, truth2 = make_measurement(coefs, BASIS, N, noise_variance=1.0, n_measurements=2,
                                  noise_psd=make_noise_psd(4.0), random_state=15)
    assert X2.shape == (2, N, N) and truth2.component.shape == (truth2.n_copies,)
    X3, truth3 = make_measurement(coefs, BASIS, N, noise_variance=1.0,
                                  formation=truth.formations[0], random_state=16)
    assert X3.shape == (N, N) and truth3.component.shape == (truth3.n_copies,)
    assert truth3.formations == (truth.formations[0],)


# ------------------------------------------------------------ min_separation
def chebyshev_gaps(positions):
    """Chebyshev distance of each pair of corners (the off-diagonal of the matrix)."""
    gaps = np.abs(positions[:, None] - positions[None]).max(axis=-1)
    return gaps[~np.eye(len(positions), dtype=bool)]


@pytest.mark.parametrize("s", [L, L + 1, 7, 2 * L - 2, 2 * L - 1])
def test_min_separation_is_respected_and_tight(coef, s):
    # many more copies asked for than fit: the placement packs them to its limit
    with pytest.warns(RuntimeWarning, match="density reached"):
        X, truth = make_measurement(coef, BASIS, 120, density=0.9, min_separation=s,
                                    random_state=s)
    gaps = chebyshev_gaps(truth.positions)
    assert gaps.min() == s   # respected, and tight (no larger separation enforced)
    # never more than one corner per s x s cell of the (N - L + 1)**2 corners
    assert truth.n_copies <= int(np.ceil((120 - L + 1) / s)) ** 2
    # copies never overlap: each is its own rotated image, nothing else is drawn
    covered = np.zeros(X.shape, dtype=int)
    for (r, c), phi in zip(truth.positions, truth.angles):
        covered[r:r + L, c:c + L] += 1
        assert_allclose(X[r:r + L, c:c + L], BASIS.evaluate(BASIS.rotate(coef, phi)),
                        rtol=0, atol=1e-12)
    assert covered.max() == 1 and np.all(X[covered == 0] == 0.0)


def test_min_separation_below_2l_minus_1_puts_two_copies_in_one_patch(coef):
    _, truth = make_measurement(coef, BASIS, 200, density=0.4, min_separation=L,
                                random_state=0)
    assert truth.n_copies == round(0.4 * 200**2 / L**2)   # above the default's limit 25/81
    assert truth.density > L**2 / (2 * L - 1) ** 2
    # some L x L patch of the non-overlapping grid touches two copies
    touched = np.zeros((200 // L + 1, 200 // L + 1), dtype=int)
    for r, c in truth.positions:
        cells = {((r + a) // L, (c + b) // L) for a in (0, L - 1) for b in (0, L - 1)}
        for cell in cells:
            touched[cell] += 1
    assert touched.max() >= 2
    # the paper's separation: never
    _, truth = make_measurement(coef, BASIS, 200, density=0.04, random_state=0)
    touched[:] = 0
    for r, c in truth.positions:
        for cell in {((r + a) // L, (c + b) // L) for a in (0, L - 1) for b in (0, L - 1)}:
            touched[cell] += 1
    assert touched.max() == 1


def test_min_separation_none_draws_what_it_always_did(coef):
    kw = dict(density=0.04, snr=3.0, random_state=11)
    X, truth = make_measurement(coef, BASIS, 120, **kw)
    # pinned from the simulator before min_separation existed
    assert truth.n_copies == 23
    assert truth.positions[:3].tolist() == [[15, 105], [14, 18], [92, 57]]
    assert float(X.sum()) == pytest.approx(911.4619798743813, rel=1e-12)
    for s in (None, 2 * L - 1, np.int64(2 * L - 1)):
        Xs, truths = make_measurement(coef, BASIS, 120, min_separation=s, **kw)
        assert_array_equal(Xs, X)
        assert_array_equal(truths.positions, truth.positions)
        assert_array_equal(truths.angles, truth.angles)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert_array_equal(place_copies((200, 300), 7, 150, rng_a),
                       place_copies((200, 300), 7, 150, rng_b, min_separation=13))
    # the random draws do not depend on the separation: at a low density the
    # first corner (never rejected) is the same for every s
    firsts = {tuple(make_measurement(coef, BASIS, 120, min_separation=s, **kw)[1].positions[0])
              for s in range(L, 2 * L)}
    assert firsts == {(15, 105)}


def test_min_separation_with_several_measurements_and_a_mixture(coefs):
    _, truth = make_measurement(coefs, BASIS, 100, density=0.3, n_measurements=2,
                                min_separation=6, random_state=1)
    assert_array_equal(np.bincount(truth.measurement), [round(0.3 * 100**2 / L**2)] * 2)
    for i in range(2):
        assert chebyshev_gaps(truth.positions[truth.measurement == i]).min() >= 6
    assert truth.component.shape == (truth.n_copies,)


def test_unreachable_density_warning_names_the_separation(coef):
    with pytest.warns(RuntimeWarning,
                      match=r"7 apart \(min_separation; 2L-1=9 by default\): density reached "
                            r".* L\*\*2/min_separation\*\*2=0\.5102"):
        _, truth = make_measurement(coef, BASIS, 100, density=0.9, min_separation=7,
                                    random_state=0)
    # the hard limit of the separation: one corner per 7 x 7 cell
    assert truth.density <= L**2 / 7**2 * (1 + 7 / 100) ** 2
    with pytest.warns(RuntimeWarning, match=r"9 apart .*=0\.3086"):
        make_measurement(coef, BASIS, 100, density=0.9, random_state=0)


@pytest.mark.parametrize("s, exc, match", [
    (L - 1, ValueError, r"min_separation must lie in \[L, 2L-1\] = \[5, 9\] for image_size "
                        r"L=5 \(below L copies would overlap.*got 4"),
    (0, ValueError, r"min_separation must lie in \[L, 2L-1\] = \[5, 9\].*got 0"),
    (-9, ValueError, r"min_separation must lie in \[L, 2L-1\] = \[5, 9\].*got -9"),
    (2 * L, ValueError, r"min_separation must lie in \[L, 2L-1\] = \[5, 9\].*got 10"),
    (7.0, TypeError, r"min_separation must be None or an integer in \[L, 2L-1\] = \[5, 9\], "
                     r"got float 7\.0"),
    (True, TypeError, "min_separation must be None or an integer"),
    ("7", TypeError, "min_separation must be None or an integer"),
])
def test_min_separation_errors(coef, s, exc, match):
    with pytest.raises(exc, match=match):
        make_measurement(coef, BASIS, 50, min_separation=s, random_state=0)
    with pytest.raises(exc, match=match):
        place_copies((50, 50), L, 10, np.random.default_rng(0), min_separation=s)
