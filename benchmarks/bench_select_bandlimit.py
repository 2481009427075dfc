"""Error against single-core time of an L = 21 fit of a band-limited particle.

The issue-12 setting: truth ``make_target(FourierBesselBasis(21,
n_coefficients=60), random_state=seed)`` rendered in that basis, N = 1536,
SNR 3, density 0.1; the fit is ``ApproxEMEstimator(21, random_state=seed,
**kw)`` (the default basis unless ``--n-coefficients``).  After every
iteration the state's coefficients and the elapsed time are recorded (by
wrapping the estimator's ``_step``; the errors are computed after the fit,
outside the timing), and the fit is stopped after the iteration that
crosses ``--budget`` seconds.  The error is rotation-aligned, with the truth
expanded (exactly: the 61 functions are among the fitted basis's) into the
fitted basis: on the images and by eq. (19).

Usage::

    taskset -c 1 python benchmarks/bench_select_bandlimit.py --seed 0
    taskset -c 1 python benchmarks/bench_select_bandlimit.py --seed 0 \\
        --kw '{"select_bandlimit": true}'
    taskset -c 1 python benchmarks/bench_select_bandlimit.py --seed 0 --n-coefficients 60
    taskset -c 1 python benchmarks/bench_select_bandlimit.py --seed 0 --truth-n-coefficients 0

(``--truth-n-coefficients 0``: a truth with a white spectrum up to Nyquist in
the 281-function default basis, as in ``bench_sizes.py --recovery``.)
"""

import argparse
import json
import time
import warnings

from threadpoolctl import threadpool_limits

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target,
                      relative_error)
from mtdlearn.basis._bandlimits import embed_coef


class _Stop(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=300.0)
    ap.add_argument("--n-coefficients", type=int, default=None)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--kw", default="{}", help="more estimator parameters, as JSON")
    ap.add_argument("--truth-n-coefficients", type=int, default=60,
                    help="n_coefficients of the truth's basis; 0: the default basis")
    a = ap.parse_args()
    L, seed = 21, a.seed
    truth_basis = (FourierBesselBasis(L, n_coefficients=a.truth_n_coefficients)
                   if a.truth_n_coefficients else FourierBesselBasis(L))
    coef = make_target(truth_basis, random_state=seed)
    X, _ = make_measurement(coef, truth_basis, 1536, snr=3, density=0.1, random_state=seed)
    basis = FourierBesselBasis(L, n_coefficients=a.n_coefficients) if a.n_coefficients else None
    em = ApproxEMEstimator(L, basis=basis, random_state=seed, max_iter=a.max_iter,
                           **json.loads(a.kw))
    trace = []
    step = em._step
    t0 = time.perf_counter()

    def timed_step(prepared, state, objective, stats, n_jobs):
        out = step(prepared, state, objective, stats, n_jobs)
        trace.append((time.perf_counter() - t0, out[0].coef.copy(),
                      prepared.hypotheses.basis))
        if trace[-1][0] > a.budget:
            raise _Stop
        return out

    em._step = timed_step
    stopped = False
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        try:
            em.fit(X)
        except _Stop:
            stopped = True
    full = em.basis_
    truth = full.expand(truth_basis.evaluate(coef))
    print(f"{'iter':>4} {'time s':>7} {'p':>4} {'img':>7} {'coef':>7}")
    for i, (t, c, b) in enumerate(trace, 1):
        c = embed_coef(c, b, full) if b.n_functions != full.n_functions else c
        print(f"{i:>4} {t:>7.1f} {b.n_functions:>4} "
              f"{relative_error(truth, c, full, domain='image'):>7.4f} "
              f"{relative_error(truth, c, full):>7.4f}", flush=True)
    print("stopped at the budget" if stopped else f"converged: {em.converged_}")


if __name__ == "__main__":
    main()
