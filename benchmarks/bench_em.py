"""Throughput of one approximate-EM iteration against a measured roofline.

For each measurement side N, rotation count K, SNR and E-step dtype (L = 5,
10 coefficients, density 0.04; SNR 5 and float64 by default) this prints:

* seconds per EM iteration (one E-step over all patches + one M-step), for
  ``n_jobs=1`` and ``n_jobs=2``;
* patch-hypotheses per second (N_d * H / seconds, H = K (2L-1)^2 + 1);
* peak memory of the iteration beyond the measurement (tracemalloc, which
  sees every NumPy allocation), and the process's peak RSS;
* the bare roofline of the same shapes, measured in the same run: one GEMM
  of the (N_d, L^2 + 2) patches with the (L^2 + 2, H) templates plus one exp
  over the N_d x H result, streamed over the same chunks, single-threaded
  (and its 2-thread counterpart); the ratio roofline / iteration shows how
  close to the limit the EM runs.

Usage::

    python benchmarks/bench_em.py                  # N in {500, 1000, 2000}, K in {8, 16}
    python benchmarks/bench_em.py --sizes 10000 --rotations 16 --jobs 2
    python benchmarks/bench_em.py --flat-cost       # flat cost across SNR

The iteration runs at the true parameters, so at high SNR most log-posteriors
are far below each row's maximum: the flat-cost target is that an iteration
at SNR 500 costs at most 1.15x one at SNR 5 (the exponents are clamped so
that ``exp`` stays on its fast path; ``patch_model._FLOOR``).  ``--flat-cost``
measures exactly that (N = 1000, K = 16, one thread, float64 and float32),
alternating the SNR-5 and SNR-500 iterations ``--repeat`` times (at least 8)
and keeping each one's minimum, so that a machine whose speed drifts (a
shared VM) affects both alike.
"""

import argparse
import resource
import time
import tracemalloc

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from mtdlearn import FourierBesselBasis, make_measurement, make_target
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.patch_model import build_patch_model, chunk_size
from mtdlearn.likelihood.statistics import estep_statistics
from mtdlearn.likelihood.m_step import m_step
from mtdlearn.data.patches import PatchData


def roofline(n_patches, H, d, chunk, n_jobs):
    """One GEMM + one exp over an n_patches x H array, chunked like the E-step."""
    rng = np.random.default_rng(0)
    P = rng.standard_normal((chunk, d + 2)) * 0.1
    T = rng.standard_normal((H, d + 2)) * 0.1

    def work(n):
        E = P[:n] @ T.T
        np.exp(E, out=E)

    n_chunks = -(-n_patches // chunk)
    with threadpool_limits(1, user_api="blas"):
        t0 = time.perf_counter()
        if n_jobs == 1:
            for _ in range(n_chunks):
                work(chunk)
        else:
            Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(lambda: [work(chunk) for _ in range(8)])()
                for _ in range(-(-n_chunks // 8)))
        return time.perf_counter() - t0


def em_iteration(data, coef, rho, sigma2, space, chunk, n_jobs, dtype=np.float64):
    t0 = time.perf_counter()
    model = build_patch_model(coef, rho, sigma2, space, dtype=dtype)
    stats = estep_statistics(data, model, chunk=chunk, n_jobs=n_jobs)
    m_step(stats, rho, space, estimate_noise=True)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--rotations", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--snr", type=float, nargs="+", default=[5.0])
    parser.add_argument("--dtype", nargs="+", default=["float64"],
                        choices=["float64", "float32"])
    parser.add_argument("--flat-cost", action="store_true",
                        help="SNR 500 against SNR 5, interleaved (see above)")
    args = parser.parse_args()
    if args.flat_cost:
        return flat_cost(max(args.repeat, 8))

    L = 5
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    print(f"{'N':>6} {'K':>3} {'SNR':>5} {'dtype':>7} {'jobs':>4} {'N_d':>9} {'H':>5} "
          f"{'s/iter':>8} {'hyp/s':>9} {'roof s':>8} {'roof/it':>7} {'peak MB':>8} "
          f"{'rss MB':>7}")
    for N in args.sizes:
        for snr in args.snr:
            X, truth = make_measurement(coef, basis, N, snr=snr, random_state=0)
            data = PatchData([X], L)
            rho = density_to_shift_probabilities(0.03, L)
            for K in args.rotations:
                angles = 2 * np.pi * np.arange(K) / K
                H = K * (2 * L - 1) ** 2 + 1
                chunk = chunk_size(H - 1, L)
                space = HypothesisSpace(basis, angles)   # caches the M-step's tables
                for dtype in args.dtype:
                    for jobs in args.jobs:
                        _row(args, N, K, snr, dtype, jobs, data, coef, rho, truth, space, H,
                             chunk)


def flat_cost(repeat):
    """Cost of an iteration at SNR 500 against SNR 5, interleaved, min of ``repeat``."""
    L, N, K = 5, 1000, 16
    basis = FourierBesselBasis(L, n_coefficients=10)
    coef = make_target(basis, random_state=0)
    space = HypothesisSpace(basis, 2 * np.pi * np.arange(K) / K)
    chunk = chunk_size(K * (2 * L - 1) ** 2, L)
    rho = density_to_shift_probabilities(0.03, L)
    data = {}
    for snr in (5, 500):
        X, truth = make_measurement(coef, basis, N, snr=snr, random_state=0)
        data[snr] = PatchData([X], L), truth.noise_variance
    best = {}
    with threadpool_limits(1, user_api="blas"):
        for _ in range(repeat):
            for dtype in ("float64", "float32"):
                for snr, (d, sigma2) in data.items():
                    t = em_iteration(d, coef, rho, sigma2, space, chunk, 1, np.dtype(dtype))
                    best[dtype, snr] = min(best.get((dtype, snr), np.inf), t)
    print(f"N={N} K={K}, one thread, min of {repeat} interleaved runs")
    for dtype in ("float64", "float32"):
        print(f"{dtype}: SNR 5 {best[dtype, 5]:.4f} s, SNR 500 {best[dtype, 500]:.4f} s, "
              f"ratio {best[dtype, 500] / best[dtype, 5]:.3f}")


def _row(args, N, K, snr, dtype, jobs, data, coef, rho, truth, space, H, chunk):
    L = space.image_size
    tracemalloc.start()
    t_it = min(em_iteration(data, coef, rho, truth.noise_variance, space, chunk, jobs,
                            np.dtype(dtype)) for _ in range(args.repeat))
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    t_roof = min(roofline(data.n_patches, H - 1, L * L, chunk, jobs)
                 for _ in range(args.repeat))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{N:>6} {K:>3} {snr:>5g} {dtype:>7} {jobs:>4} {data.n_patches:>9} {H:>5} "
          f"{t_it:>8.4f} {data.n_patches * H / t_it:>9.3g} {t_roof:>8.4f} "
          f"{t_roof / t_it:>7.0%} {peak:>8.1f} {rss:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
