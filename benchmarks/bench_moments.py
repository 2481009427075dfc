"""Autocorrelation analysis at large L: the full third moment against a subset of shifts.

For one simulated N x N measurement (default L = 21, N = 4096, SNR 3,
density 0.1) and each basis (the default ``FourierBesselBasis(L)`` and/or
``--n-coefficients``), and for each ``shift_radius`` (``None``: the full
``L**4`` third moment; a number: the quarter disk of that radius,
``mtdlearn.autocorrelation.moments.third_order_shifts``), prints:

* ``moments``: ``measurement_autocorrelations`` (one pass over the data);
* ``cost+grad``: one evaluation of the cost and its gradient as the fit
  calls it (the rotated basis precomputed);
* ``fit``: one L-BFGS-B start (``fit_autocorrelations``) from the
  ``RandomInitializer`` start of ``--seed``, its iterations and the relative
  error of its image (``relative_error``) against the truth.

Seconds are process CPU seconds with BLAS limited to one thread (the
machine may be shared; wall seconds are printed beside them).  The full
third moment's fit at the default basis takes many minutes; ``--fit-max-iter``
caps it and ``--no-full-fit`` skips it.

Usage::

    python benchmarks/bench_moments.py --quick
    python benchmarks/bench_moments.py --n-coefficients 60 --radii none auto 14 8
    python benchmarks/bench_moments.py --radii auto --default-basis
"""

import argparse
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from mtdlearn import FourierBesselBasis, make_measurement, make_target, relative_error
from mtdlearn.initializers import RandomInitializer
from mtdlearn.autocorrelation.fit import _cost_and_grad_flat, fit_autocorrelations
from mtdlearn.autocorrelation.model_moments import _rotated_evaluation, default_n_angles
from mtdlearn.autocorrelation.moments import (_check_shift_radius, _shift_subset,
                                              measurement_autocorrelations, third_order_shifts)
from mtdlearn.imaging.shifts import shift_probabilities_to_density


def _timed(fn):
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - t


def _radius(text, L):
    if text.lower() == "none":
        return None
    return _check_shift_radius("auto" if text == "auto" else float(text), L)


def run(L, size, snr, density, n_coefficients, radii, seed, fit_max_iter, full_fit):
    basis = FourierBesselBasis(L) if n_coefficients is None else \
        FourierBesselBasis(L, n_coefficients=n_coefficients)
    coef = make_target(basis, random_state=0)
    X, truth = make_measurement(coef, basis, size, density=density, snr=snr, random_state=0)
    state = RandomInitializer().initialize([X], basis, None, np.random.default_rng(seed))
    density0 = shift_probabilities_to_density(state.shift_probabilities)
    BR = _rotated_evaluation(basis, default_n_angles(basis))
    rows = []
    for r in radii:
        measured, cpu_m, wall_m = _timed(
            lambda: measurement_autocorrelations(X, L, shift_radius=r))
        sub = _shift_subset(L, r)
        n = len(third_order_shifts(L, r))
        m1, m2, m3 = measured[0], measured[1].ravel(), measured[2].reshape(n, n)
        _cost_and_grad_flat(BR, density0, state.coef, 0.1, m1, m2, m3, L, sub)  # warm up
        _, cpu_g, wall_g = _timed(
            lambda: _cost_and_grad_flat(BR, density0, state.coef, 0.1, m1, m2, m3, L, sub))
        fit = "skipped"
        if r is not None or full_fit:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res, cpu_f, wall_f = _timed(lambda: fit_autocorrelations(
                    measured, basis, density0, state.coef,
                    noise_variance0=state.noise_variance, max_iter=fit_max_iter,
                    shift_radius=r))
            err = relative_error(coef, res.coef, basis)
            fit = (f"{cpu_f:7.1f} ({wall_f:6.1f}) {res.n_iter:5d}"
                   f"{'' if res.converged else '*'} {err:7.4f}")
        rows.append(f"{basis.n_functions:4d} {str(r):>6s} {n:5d} "
                    f"{cpu_m:7.1f} ({wall_m:6.1f}) {cpu_g:7.3f} ({wall_g:6.3f}) {fit}")
        print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=21)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--snr", type=float, default=3.0)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--n-coefficients", type=int, nargs="*", default=[60],
                    help="bases FourierBesselBasis(L, n_coefficients=m) to run")
    ap.add_argument("--default-basis", action="store_true",
                    help="also run the default basis FourierBesselBasis(L)")
    ap.add_argument("--radii", nargs="+", default=["none", "auto"],
                    help="shift_radius values: none, auto or numbers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-max-iter", type=int, default=1000)
    ap.add_argument("--no-full-fit", action="store_true",
                    help="skip the fit with the full third moment")
    ap.add_argument("--quick", action="store_true",
                    help="L = 11, N = 600, 20 coefficients, 100 fit iterations: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.image_size, args.size, args.n_coefficients = 11, 600, [20]
        args.radii, args.fit_max_iter = ["none", "5.5"], 100
    L = args.image_size
    radii = [_radius(r, L) for r in args.radii]
    bases = ([None] if args.default_basis else []) + list(args.n_coefficients)
    print(f"L={L}, N={args.size}, SNR {args.snr}, density {args.density}; "
          "CPU seconds, one BLAS thread (wall seconds in brackets); * = not converged")
    print("   p radius     n  moments (wall)  cost+grad (wall)   fit (wall) iters   error")
    with threadpool_limits(limits=1, user_api="blas"):
        for m in bases:
            run(L, args.size, args.snr, args.density, m, radii, args.seed,
                args.fit_max_iter, not args.no_full_fit)


if __name__ == "__main__":
    main()
