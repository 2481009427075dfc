"""Tests of mtdlearn.em._components: the mixture's start from a one-image fit."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, UniformRotationGrid,
                      component_errors, make_measurement, make_particle)
from mtdlearn.data.patches import PatchData
from mtdlearn.em import _components
from mtdlearn.em._state import _EMData
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.initializers import InitialState
from mtdlearn.likelihood.hypotheses import HypothesisSpace

L = 11


@pytest.fixture(scope="module")
def complex_and_subunit():
    """A complex and its subunit (0.6 / 0.4), 238 copies, SNR 10, and their
    blend: the one image a one-image fit of them would approach."""
    basis = FourierBesselBasis(L)
    kinds = np.stack([make_particle(basis, random_state=1),
                      make_particle(basis, diameter=4.5, random_state=2)])
    X, truth = make_measurement(kinds, basis, 600, density=0.08, snr=10, weights=[0.6, 0.4],
                                random_state=0)
    space = HypothesisSpace(basis, UniformRotationGrid(16).get_angles())
    prepared = _EMData(PatchData([X], L), space, True)
    blend = InitialState(0.6 * kinds[0] + 0.4 * kinds[1],
                         density_to_shift_probabilities(0.08, L), truth.noise_variance)
    return basis, kinds, prepared, blend


def test_classify_starts_each_component_nearer_its_kind_than_the_blend(complex_and_subunit):
    basis, kinds, prepared, blend = complex_and_subunit
    start = _components.classify(prepared, blend, 2, 0, 1)
    assert start.coef.shape == (2, basis.n_functions)
    np.testing.assert_array_equal(start.weights, [0.5, 0.5])
    assert start.shift_probabilities is blend.shift_probabilities
    assert start.noise_variance == blend.noise_variance
    align = "rotation+translation"
    ours = component_errors(kinds, start.coef, basis, align=align)
    one = component_errors(kinds, np.stack([blend.coef] * 2), basis, align=align)
    # the copies aligned to the blend, grouped by k-means: measured 0.085 and
    # 0.080 against the blend's 0.139 and 0.208 (the grid's 16 rotations and
    # whole-pixel shifts bound the alignment); a random split (0.3 of the
    # norm in random directions) starts each kind farther than the blend
    assert sorted(ours.assignment) == [0, 1]
    np.testing.assert_array_less(ours.errors, 0.75 * one.errors)


def test_classify_is_reproducible_and_does_not_depend_on_n_jobs(complex_and_subunit):
    _, _, prepared, blend = complex_and_subunit
    a = _components.classify(prepared, blend, 2, 3, 1)
    b = _components.classify(prepared, blend, 2, 3, 2)
    np.testing.assert_array_equal(a.coef, b.coef)


def test_classify_leaves_what_it_cannot_read_to_the_random_split(complex_and_subunit):
    _, _, prepared, blend = complex_and_subunit
    # through CTFs or colored noise the copies are filtered
    groups = _EMData(prepared.data, prepared.hypotheses, True, groups=())
    assert _components.classify(groups, blend, 2, 0, 1) is None
    # no copy found: an empty measurement
    empty = _EMData(PatchData([np.zeros((66, 66))], L), prepared.hypotheses, True)
    assert _components.classify(empty, blend, 2, 0, 1) is None


def test_split_adds_a_fixed_share_of_the_norm(complex_and_subunit):
    _, _, _, blend = complex_and_subunit
    start = _components.split(blend, 3, 0)
    steps = np.linalg.norm(start.coef - blend.coef, axis=1)
    np.testing.assert_allclose(steps, 0.3 * np.linalg.norm(blend.coef), rtol=1e-12)
    np.testing.assert_array_equal(start.weights, np.full(3, 1 / 3))
    assert _components.split(start, 3, 0) is start


def test_a_mixture_fit_starts_from_the_groups_where_it_can(complex_and_subunit, monkeypatch):
    basis, _, prepared, _ = complex_and_subunit
    X = prepared.data.measurements[0]
    calls = []
    classify = _components.classify

    def spy(*args):
        calls.append(classify(*args))
        return calls[-1]

    monkeypatch.setattr(_components, "classify", spy)
    em = ApproxEMEstimator(L, basis=basis, n_components=2, max_iter=3, n_init=2,
                           random_state=0)
    with pytest.warns(ConvergenceWarning):      # three iterations: not converged
        em.fit(X)
    # one classification per start, each found its groups
    assert len(calls) == 2 and all(c is not None for c in calls)
    assert not np.array_equal(calls[0].coef, calls[1].coef)
