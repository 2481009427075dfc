"""Tests of mtdlearn.progress: the bars show iterations and change no result."""

import io

import numpy as np
import pytest

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
from mtdlearn.progress import ProgressBar


@pytest.fixture(scope="module")
def data():
    basis = FourierBesselBasis(5, n_coefficients=10)
    X, _ = make_measurement(make_target(basis, random_state=0), basis, 200, snr=10,
                            random_state=0)
    return basis, X


def test_bar_counts_iterations_and_changes_nothing(data):
    basis, X = data
    plain = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    out = io.StringIO()
    with ProgressBar(file=out, disable=False):
        shown = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    np.testing.assert_array_equal(plain.coef_, shown.coef_)
    text = out.getvalue()
    assert "ApproxEM" in text
    # the last state of the bar is the last iteration of the fit, out of max_iter
    assert f"{plain.n_iter_}/100" in text


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_no_bar_when_not_a_terminal_or_disabled(data):
    basis, X = data
    for kwargs in ({"disable": None}, {"disable": True}):   # StringIO is not a terminal
        out = io.StringIO()
        with ProgressBar(file=out, **kwargs):
            ApproxEMEstimator(5, basis=basis, random_state=0, max_iter=3).fit(X)
        assert out.getvalue() == ""


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_outside_the_block_nothing_is_shown(data, capsys):
    basis, X = data
    with ProgressBar(disable=False):
        pass
    ApproxEMEstimator(5, basis=basis, random_state=0, max_iter=3).fit(X)
    assert capsys.readouterr().err == ""
