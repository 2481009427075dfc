"""Realistic particle sizes: cost of one EM iteration against L, and recovery.

Part 1 (``--cost``): for L in {5, 11, 21, 41} at the same measurement side N
and the same K (default basis, density 0.1, SNR 3), the seconds of one EM
iteration (build the model, E-step over all patches, M-step), single-thread,
for the GEMM kernel and the FFT kernel (``mtdlearn.fft_estep``), each the min
of ``--repeat`` runs.  Beside them:

* the flops of each kernel (GEMM: two GEMMs of c x (L^2 + 2) x H; FFT:
  ``4 N^2 (2.5 log2 N^2 + 4)`` per patch and rotation, the cost model);
* the roofline: the same GEMM flops at the machine's measured single-thread
  GEMM rate, plus one exp over the patch-hypothesis block at the measured
  exp rate (what the GEMM kernel could at best reach);
* the ratio to the L = 5 iteration of the kernel ``choose_estep`` picks.

The GEMM kernel at L = 41 needs its H x L^2 template table (1.4 GB at
K = 16) and is skipped unless ``--gemm-41``.

Part 2 (``--recovery``): a default-settings fit (``ApproxEMEstimator(L)``
with only ``random_state``; optionally ``--n-coefficients``) at N=4096 (or
``--recovery-size``), density 0.1, for each SNR: time, iterations and
relative error, the measurement's size and the process's peak resident
memory (a high-water mark over the whole run, data included).

Usage::

    python benchmarks/bench_sizes.py --cost --size 1050
    python benchmarks/bench_sizes.py --recovery --image-size 21 --snr 3 10 --recovery-size 1536
"""

import argparse
import resource
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target,
                      relative_error)
from mtdlearn.fft_estep import (build_fft_patch_model, choose_estep, estep_statistics_fft,
                                fft_grid_size)
from mtdlearn.hypotheses import HypothesisSpace
from mtdlearn.operators import density_to_shift_probabilities
from mtdlearn.patch_model import build_patch_model, estep_statistics, m_step
from mtdlearn.patches import PatchData


def _rates():
    """Single-thread GEMM flop rate and exp rate of this machine."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((400, 627)), rng.standard_normal((627, 1296))
    E = rng.standard_normal((400, 1296)) * 0.1
    best_gemm = best_exp = np.inf
    with threadpool_limits(1, user_api="blas"):
        for _ in range(5):
            t = time.perf_counter()
            A @ B
            best_gemm = min(best_gemm, time.perf_counter() - t)
            t = time.perf_counter()
            np.exp(E)
            best_exp = min(best_exp, time.perf_counter() - t)
    return 2 * A.shape[0] * A.shape[1] * B.shape[1] / best_gemm, E.size / best_exp


def _iteration(kernel, coef, rho, sigma2, space, data):
    build, estep = ((build_patch_model, estep_statistics) if kernel == "gemm"
                    else (build_fft_patch_model, estep_statistics_fft))
    t = time.perf_counter()
    stats = estep(data, build(coef, rho, sigma2, space), n_jobs=1)
    m_step(stats, rho, space)
    return time.perf_counter() - t


def cost(size, sizes, K, repeat, gemm_41):
    gemm_rate, exp_rate = _rates()
    print(f"single-thread GEMM {gemm_rate / 1e9:.1f} GFlop/s, exp {exp_rate / 1e6:.0f} M/s")
    print(f"N = {size}, K = {K}, default basis, min of {repeat} runs (2 shared cores)")
    print(f"{'L':>3} {'p':>5} {'N_d':>7} {'H':>7} {'gemm s':>8} {'fft s':>7} {'roofline s':>10}"
          f" {'GF gemm':>8} {'GF fft':>7} {'choice':>6} {'x L=5':>6}")
    base = None
    for L in sizes:
        basis = FourierBesselBasis(L)
        coef = make_target(basis, random_state=0)
        X, truth = make_measurement(coef, basis, size, snr=3, density=0.1, random_state=0)
        data = PatchData([X], L)
        space = HypothesisSpace(basis, 2 * np.pi * np.arange(K) / K)
        rho = density_to_shift_probabilities(0.1, L)
        space.rotated_evaluation  # cached table, built once per fit
        H, d, n2 = space.n_hypotheses, L * L, fft_grid_size(L) ** 2
        gf_gemm = 2 * 2 * data.n_patches * H * (d + 2) / 1e9
        gf_fft = data.n_patches * K * 4 * n2 * (2.5 * np.log2(n2) + 4) / 1e9
        roof = gf_gemm * 1e9 / gemm_rate + data.n_patches * H / exp_rate
        times = {}
        for kernel in ("gemm", "fft"):
            if kernel == "gemm" and L >= 41 and not gemm_41:
                times[kernel] = np.nan
                continue
            with threadpool_limits(1, user_api="blas"):
                times[kernel] = min(_iteration(kernel, coef, rho, truth.noise_variance, space,
                                               data) for _ in range(repeat))
        choice = choose_estep(L, K)
        if base is None:
            base = times[choice]
        print(f"{L:>3} {basis.n_functions:>5} {data.n_patches:>7} {H:>7} {times['gemm']:>8.2f}"
              f" {times['fft']:>7.2f} {roof:>10.2f} {gf_gemm:>8.1f} {gf_fft:>7.1f}"
              f" {choice:>6} {times[choice] / base:>6.1f}", flush=True)


def recovery(L, snrs, size, n_coefficients, seeds, max_iter):
    print(f"L = {L}, N = {size}, density 0.1, default settings"
          + (f", n_coefficients={n_coefficients}" if n_coefficients else ""))
    print(f"{'SNR':>5} {'seed':>4} {'p':>5} {'iters':>5} {'time s':>7} {'error':>7} "
          f"{'data MB':>8} {'peak RSS MB':>11}")
    for snr in snrs:
        for seed in seeds:
            basis = (FourierBesselBasis(L, n_coefficients=n_coefficients) if n_coefficients
                     else FourierBesselBasis(L))
            coef = make_target(basis, random_state=seed)
            X, _ = make_measurement(coef, basis, size, snr=snr, density=0.1, random_state=seed)
            em = ApproxEMEstimator(L, basis=basis if n_coefficients else None,
                                   max_iter=max_iter, random_state=seed)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                em.fit(X)
            err = relative_error(coef, em.coef_, basis)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{snr:>5g} {seed:>4} {basis.n_functions:>5} {em.n_iter_:>5}"
                  f" {time.perf_counter() - t:>7.1f} {err:>7.4f} {X.nbytes / 2**20:>8.0f}"
                  f" {rss:>11.0f}" + ("" if em.converged_ else "  (not converged)"),
                  flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--size", type=int, default=1050)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 11, 21, 41])
    ap.add_argument("--rotations", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--gemm-41", action="store_true")
    ap.add_argument("--recovery", action="store_true")
    ap.add_argument("--image-size", type=int, default=21)
    ap.add_argument("--snr", type=float, nargs="+", default=[1, 3, 10])
    ap.add_argument("--recovery-size", type=int, default=4096)
    ap.add_argument("--n-coefficients", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-iter", type=int, default=100)
    args = ap.parse_args()
    if args.cost:
        cost(args.size, args.sizes, args.rotations, args.repeat, args.gemm_41)
    if args.recovery:
        recovery(args.image_size, args.snr, args.recovery_size, args.n_coefficients,
                 args.seeds, args.max_iter)


if __name__ == "__main__":
    main()
