"""Tests of mtdlearn.basis._bandlimits (nested band-limited bases, exact coefficient
maps) and of ``ApproxEMEstimator(select_bandlimit=True)``, which uses them."""

import warnings

import numpy as np
import pytest

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target,
                      relative_error)
from mtdlearn.basis._bandlimits import (MIN_FUNCTIONS, check_nested_basis, embed_coef, nested_bases,
                               restrict_coef)


def _keys(basis):
    return set(zip(basis.frequencies.tolist(), basis.radial_indices.tolist(),
                   basis.kinds.tolist()))


@pytest.mark.parametrize("options", [{}, {"n_coefficients": 60}, {"bandlimit": 20.0},
                                     {"radius": 9.5}])
def test_nested_bases_grow_and_end_with_the_basis(options):
    basis = FourierBesselBasis(21, **options)
    stages = nested_bases(basis)
    assert stages[-1] is basis
    assert len(stages) >= 3
    counts = [b.n_functions for b in stages]
    assert counts == sorted(set(counts))
    assert counts[0] >= MIN_FUNCTIONS
    for small, big in zip(stages, stages[1:]):
        assert _keys(small) <= _keys(big)
        assert small.get_params()["radius"] == basis.get_params()["radius"]
        # a band limit: every function of `big` below the largest root of `small` is in it
        inside = big.roots <= small.roots.max()
        assert small.n_functions == int(inside.sum())


def test_nested_bases_default_sizes():
    """Each step about doubles the count (band limit times sqrt(2))."""
    assert [b.n_functions for b in nested_bases(FourierBesselBasis(21))] == [14, 30, 65, 140, 281]
    assert [b.n_functions for b in nested_bases(FourierBesselBasis(11))] == [17, 36, 78]
    # the paper's basis has no smaller stage of 10 or more functions
    basis = FourierBesselBasis(5)
    assert nested_bases(basis) == [basis]


def test_embed_and_restrict_are_exact():
    """Embedding keeps the image (the same functions: equal to rounding) and
    restricting the embedding gives the coefficients back bit for bit."""
    basis = FourierBesselBasis(21)
    rng = np.random.default_rng(0)
    for sub in nested_bases(basis)[:-1]:
        coef = rng.standard_normal(sub.n_functions)
        big = embed_coef(coef, sub, basis)
        np.testing.assert_array_equal(restrict_coef(big, basis, sub), coef)
        assert np.count_nonzero(big) == sub.n_functions
        np.testing.assert_allclose(basis.evaluate(big), sub.evaluate(coef), rtol=0,
                                   atol=1e-13 * np.abs(sub.evaluate(coef)).max())
    coef = rng.standard_normal(basis.n_functions)
    np.testing.assert_array_equal(embed_coef(coef, basis, basis), coef)
    np.testing.assert_array_equal(restrict_coef(coef, basis, basis), coef)


def test_check_nested_basis():
    check_nested_basis(FourierBesselBasis(5))
    with pytest.raises(ValueError, match="FourierBesselBasis"):
        check_nested_basis(object())


# ---------------------------------------------------------------------------
# the estimator
def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


@pytest.fixture(scope="module")
def problem():
    """L = 11, a 20-function target, N = 300, SNR 10 (about 4 s per fit)."""
    small = FourierBesselBasis(11, n_coefficients=20)
    coef = make_target(small, random_state=0)
    X, _ = make_measurement(coef, small, 300, snr=10, density=0.1, random_state=0)
    return small.evaluate(coef), X


@pytest.fixture(scope="module")
def selected(problem):
    image, X = problem
    return _fit(ApproxEMEstimator(11, rotations=8, select_bandlimit=True, max_iter=50,
                                  random_state=0), X)


def test_selection_chooses_the_best_criterion(problem, selected):
    image, X = problem
    em = selected
    stages = [b.n_functions for b in nested_bases(em.basis_)]
    assert em.basis_.n_functions == 78
    assert em.coef_.shape == (78,)
    path = em.bandlimit_path_
    assert [p for p, _, _ in path] == stages
    # the criterion (AIC per patch) is the log-likelihood less 1 / N_d per function
    for p, loglik, score in path:
        assert score == pytest.approx(loglik - p / em.n_patches_, rel=1e-12)
    scores = [s for _, _, s in path]
    chosen = int(np.argmax(scores))
    assert em.n_functions_ == stages[chosen]
    # a 20-function target: a smaller basis than the 78 of the default wins
    assert em.n_functions_ < 78
    # zero beyond the chosen band limit; image_ is the fitted image
    chosen_basis = nested_bases(em.basis_)[chosen]
    assert np.count_nonzero(em.coef_) <= em.n_functions_
    np.testing.assert_array_equal(
        embed_coef(restrict_coef(em.coef_, em.basis_, chosen_basis), chosen_basis, em.basis_),
        em.coef_)
    np.testing.assert_allclose(em.image_, em.basis_.evaluate(em.coef_))
    assert em.n_e_steps_ >= em.n_iter_ + len(path) - 1
    assert np.isfinite(em.score(X))


def test_selection_is_as_accurate_as_the_full_basis(problem, selected):
    """Measured at this seed: 0.073 with the chosen basis (36 functions),
    0.076 with the 78-function default basis fitted directly (0.107 with 17
    functions, the choice of the BIC, which is why the criterion is the
    AIC); 0.1 leaves room for rounding-level changes of the iteration path,
    not for a worse choice."""
    image, X = problem
    full = selected.basis_
    truth = full.expand(image)
    plain = _fit(ApproxEMEstimator(11, rotations=8, max_iter=50, random_state=0), X)
    err_selected = relative_error(truth, selected.coef_, full, domain="image")
    err_plain = relative_error(truth, plain.coef_, full, domain="image")
    assert err_selected < 0.1
    assert err_plain < 0.1


def test_selection_without_smaller_bases_is_the_plain_fit(basis):
    """The paper's basis (L = 5, 10 functions) has no stage below it: the fit
    is the plain one, bit for bit."""
    coef = make_target(basis, random_state=0)
    X, _ = make_measurement(coef, basis, 100, snr=10, random_state=0)
    kw = dict(basis=basis, rotations=4, max_iter=30, random_state=0)
    plain = _fit(ApproxEMEstimator(5, **kw), X)
    chosen = _fit(ApproxEMEstimator(5, select_bandlimit=True, **kw), X)
    np.testing.assert_array_equal(chosen.coef_, plain.coef_)
    np.testing.assert_array_equal(chosen.shift_probabilities_, plain.shift_probabilities_)
    assert chosen.n_iter_ == plain.n_iter_


def test_select_bandlimit_is_validated(tmp_path):
    X = np.random.default_rng(0).standard_normal((30, 30))
    with pytest.raises(TypeError, match="select_bandlimit"):
        ApproxEMEstimator(5, select_bandlimit="yes").fit(X)

    with pytest.raises(ValueError, match="checkpoint"):
        ApproxEMEstimator(5, select_bandlimit=True).fit(X, checkpoint=tmp_path / "c.npz")


def test_selection_with_refinement_refines_the_chosen_basis(problem):
    """The finer rotation grids run in the chosen sub-basis (not the full one)."""
    image, X = problem
    em = _fit(ApproxEMEstimator(11, rotations=4, refinement=2, select_bandlimit=True,
                                max_iter=30, random_state=0), X)
    assert em.coef_.shape == (78,)
    assert em.n_functions_ < 78
    assert np.count_nonzero(em.coef_) <= em.n_functions_
    assert len(em.angles_) == 8
    assert em.coarse_n_iter_ < em.n_iter_
