"""Rotation refinement at high SNR: plain K=16, plain K=64 and K=16 with refinement=4.

N = 300, SNR 500, L = 5, 10 coefficients, density 0.04, noise variance known,
autocorrelation start, tol 1e-8, one thread; each time is the min of 2 runs.

Usage::

    python benchmarks/bench_refinement.py
"""
import time, warnings, numpy as np
from mtdlearn import ApproxEMEstimator, AutocorrelationEstimator, FixedInitializer, FourierBesselBasis, make_measurement, make_target, relative_error
basis = FourierBesselBasis(5, n_coefficients=10); coef = make_target(basis, random_state=0)
X, truth = make_measurement(coef, basis, 300, density=0.04, snr=500, random_state=0)
ac = AutocorrelationEstimator(5, basis=basis, noise_variance=truth.noise_variance, random_state=0).fit(X)
init = FixedInitializer(ac.coef_, ac.shift_probabilities_)
for name, K, kw in [("plain K=16", 16, dict(dtype=np.float64, acceleration=None)),
                    ("plain K=64", 64, dict(dtype=np.float64, acceleration=None)),
                    ("default K=16 refinement=4", 16, dict(refinement=4)),
                    ("plain K=16 refinement=4", 16, dict(dtype=np.float64, acceleration=None, refinement=4))]:
    best = None
    for rep in range(2):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            em = ApproxEMEstimator(5, basis=basis, rotations=K, noise_variance=truth.noise_variance, initializer=init,
                                   max_iter=2000, tol=1e-8, random_state=0, n_jobs=1, **kw).fit(X)
        t = time.perf_counter() - t
        best = t if best is None else min(best, t)
    print(f"{name:28s} err {relative_error(coef, em.coef_, basis):.5f} iters {em.n_iter_} esteps {em.n_e_steps_} conv {em.converged_} time {best:.1f}s", flush=True)
