"""Shared pytest configuration.

Hypothesis profiles: ``mtdlearn`` (the default) keeps property tests fast and
deterministic in time on a slow two-core CI machine: no per-example deadline
(the first call of a numpy/scipy routine can be slow) and 50 examples per
property.  Choose another with ``HYPOTHESIS_PROFILE=thorough`` (500 examples).
"""

import os

import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

settings.register_profile(
    "mtdlearn",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mtdlearn"))


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas():
    """Run a module's tests with one BLAS thread.

    The tests use tiny matrices (p x p, L**2 x p); on a busy two-core machine
    OpenBLAS's worker threads then cost far more than they save (a pinv of an
    81 x 60 matrix took ~100 ms with two threads against <1 ms with one).
    Applied to the whole session; the estimators limit BLAS threads in
    their hot loops themselves.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------
# the paper's basis and a target, shared by the test modules
@pytest.fixture(scope="session")
def basis():
    """The paper's basis: L = 5, 10 coefficients."""
    from mtdlearn import FourierBesselBasis

    return FourierBesselBasis(5, n_coefficients=10)


@pytest.fixture(scope="session")
def coef(basis):
    """A random target with ``||F|| = 10`` (seed 0)."""
    from mtdlearn import make_target

    return make_target(basis, random_state=0)


@pytest.fixture(scope="session")
def simulated(basis, coef):
    """A large simulated measurement (N=2000, SNR=5, density 0.04): its truth and
    its autocorrelations."""
    from mtdlearn import make_measurement
    from mtdlearn.autocorrelation.moments import measurement_autocorrelations

    X, truth = make_measurement(coef, basis, 2000, density=0.04, snr=5, random_state=0)
    return truth, measurement_autocorrelations(X, 5)
