"""Peak memory beyond the input: it must not grow with the measurement.

For each measurement side N (L = 5, 10 coefficients, density 0.04, SNR 5,
float32 data memory-mapped from a ``.npy`` file, as ``mtdlearn fit`` reads
it) this prints the peak of the memory allocated while

* ``fit`` runs ``--max-iter`` EM iterations (and autocorrelation analysis,
  with ``--autocorrelation``),
* ``score`` computes the mean log-likelihood per patch,
* ``predict`` finds the MAP detections,

as traced by :mod:`tracemalloc` (which sees every NumPy allocation), minus
the memory that was allocated before the call (the input is a memory map, so
it is not counted at all).  ``predict`` returns one row per patch whose MAP
hypothesis is not empty: its output grows with N by nature, so the table
also shows the output's size and the peak beyond it.  Everything else
should be flat in N: the patches are streamed in chunks whose size depends
on the memory budget, never on N.

Usage::

    python benchmarks/bench_memory.py                      # N in {2000, 4000, 8000}
    python benchmarks/bench_memory.py --sizes 1000 2000 --max-iter 2
"""

import argparse
import os
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, FourierBesselBasis,
                      make_measurement, make_target)

MiB = 2.0**20


def traced_peak(func):
    """Run ``func()``; return its result, the traced peak beyond the memory
    allocated before it (MiB), and the seconds it took."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, (peak - before) / MiB, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--rotations", type=int, default=4)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--autocorrelation", action="store_true",
                        help="also measure AutocorrelationEstimator.fit")
    args = parser.parse_args()

    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    print(f"L=5, 10 coefficients, K={args.rotations}, {args.max_iter} EM iterations, "
          f"n_jobs={args.n_jobs}, float32 input memory-mapped; peak beyond the input "
          "(tracemalloc), MiB")
    header = (f"{'N':>6} {'patches':>9} {'input':>8} | {'fit':>7} {'score':>7} "
              f"{'predict':>8} {'output':>7} {'beyond':>7}")
    if args.autocorrelation:
        header += f" | {'ac fit':>7}"
    header += " | seconds fit/score/predict"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for N in args.sizes:
            X, _ = make_measurement(coef, basis, N, snr=5, random_state=0)
            path = os.path.join(tmp, f"m{N}.npy")
            np.save(path, X.astype(np.float32))
            X = None   # the array; the file is read below
            X = np.load(path, mmap_mode="r")
            em = ApproxEMEstimator(5, basis=basis, rotations=args.rotations,
                                   max_iter=args.max_iter, random_state=0,
                                   n_jobs=args.n_jobs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                _, fit_peak, t_fit = traced_peak(lambda: em.fit(X))
            _, score_peak, t_score = traced_peak(lambda: em.score(X))
            det, predict_peak, t_predict = traced_peak(lambda: em.predict(X))
            out = det.nbytes / MiB
            line = (f"{N:>6} {em.n_patches_:>9} {X.nbytes / MiB:>8.1f} | {fit_peak:>7.1f} "
                    f"{score_peak:>7.1f} {predict_peak:>8.1f} {out:>7.1f} "
                    f"{predict_peak - out:>7.1f}")
            if args.autocorrelation:
                ac = AutocorrelationEstimator(5, basis=basis, rotations=args.rotations,
                                              random_state=0, n_jobs=args.n_jobs)
                _, ac_peak, _ = traced_peak(lambda: ac.fit(X))
                line += f" | {ac_peak:>7.1f}"
            line += f" | {t_fit:.1f}/{t_score:.1f}/{t_predict:.1f}"
            print(line, flush=True)
            X = det = None   # free them before the next size


if __name__ == "__main__":
    main()
