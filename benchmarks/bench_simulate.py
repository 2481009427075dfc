"""Time and peak memory of ``make_measurement`` at the paper's settings.

L = 5, 10 Fourier-Bessel coefficients, density 0.04, SNR 5, one N x N
measurement per size.  For each size N the script prints:

* ``time_s``: wall time of ``make_measurement`` (best of ``--repeat`` runs,
  without memory tracing), and the throughput in megapixels per second;
* ``floor_s``: the time to draw N**2 standard normals into a preallocated
  array with the same generator -- a lower bound for any simulator that adds
  white noise, shown side by side as the roofline;
* ``traced_peak_MB``: peak of the memory allocated while the call runs, as seen
  by ``tracemalloc`` (Python objects and numpy buffers, which numpy reports to
  tracemalloc), in a separate run because tracing slows the call down;
* ``output_MB``: the returned float64 array, 8 N**2 bytes -- the floor of the
  peak for a simulator that returns the array, so ``traced_peak_MB /
  output_MB`` is the memory overhead;
* ``maxrss_MB``: the process's resident-set high-water mark
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, kilobytes on Linux); it is
  cumulative over the process, so with increasing sizes it reflects the largest
  size run so far plus the interpreter and libraries.

Usage::

    python benchmarks/bench_simulate.py                 # N = 1000, 4000, 10000
    python benchmarks/bench_simulate.py --sizes 10000 --repeat 3
"""

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np

from mtdlearn import FourierBesselBasis
from mtdlearn.data.simulate import make_measurement, make_target

MB = 1024.0**2


def _maxrss_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return rss / MB if sys.platform == "darwin" else rss / 1024.0


def _simulate(coef, basis, size, seed):
    return make_measurement(coef, basis, size, density=0.04, snr=5.0, random_state=seed)


def bench(size, repeat, seed=0):
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=seed)
    _simulate(coef, basis, 50, seed)  # warm up imports and caches

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        X, truth = _simulate(coef, basis, size, seed)
        times.append(time.perf_counter() - t0)
        n_copies, density = truth.n_copies, truth.density
        del X, truth

    out = np.empty((size, size))
    rng = np.random.default_rng(seed)
    floors = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rng.standard_normal(out=out)
        floors.append(time.perf_counter() - t0)
    del out

    tracemalloc.start()
    X, truth = _simulate(coef, basis, size, seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del X, truth

    best = min(times)
    return {
        "N": size,
        "copies": n_copies,
        "density": density,
        "time_s": best,
        "Mpix_per_s": size * size / best / 1e6,
        "floor_s": min(floors),
        "traced_peak_MB": peak / MB,
        "output_MB": 8.0 * size * size / MB,
        "maxrss_MB": _maxrss_mb(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000],
                        help="measurement sides N (default: 1000 4000 10000)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs per size; the best is reported (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(n < 5 for n in args.sizes):
        parser.error("--repeat must be >= 1 and every size >= 5")

    print("make_measurement: L=5, 10 coefficients, density 0.04, SNR 5")
    print("memory: traced_peak = tracemalloc peak during the call (separate run); "
          "maxrss = process high-water mark (ru_maxrss)")
    header = (f"{'N':>6} {'copies':>8} {'density':>8} {'time_s':>8} {'Mpix/s':>8} "
              f"{'floor_s':>8} {'traced_peak_MB':>15} {'output_MB':>10} {'maxrss_MB':>10}")
    print(header)
    for size in args.sizes:
        r = bench(size, args.repeat, args.seed)
        print(f"{r['N']:>6} {r['copies']:>8} {r['density']:>8.4f} {r['time_s']:>8.3f} "
              f"{r['Mpix_per_s']:>8.1f} {r['floor_s']:>8.3f} {r['traced_peak_MB']:>15.1f} "
              f"{r['output_MB']:>10.1f} {r['maxrss_MB']:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
