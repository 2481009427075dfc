"""Realistic particle sizes: cost of one EM iteration against L, and recovery.

Part 1 (``--cost``): for L in {5, 11, 21, 41} at the same measurement side N
and the same K (default basis, density 0.1, SNR 3), the seconds of one EM
iteration (build the model, E-step over all patches, M-step), single-thread,
for the GEMM kernel and the FFT kernel (``mtdlearn.likelihood.fft_estep``), each the min
of ``--repeat`` runs.  Beside them:

* the flops of each kernel (GEMM: two GEMMs of c x (L^2 + 2) x H; FFT:
  ``4 N^2 (2.5 log2 N^2 + 4)`` per patch and rotation, the cost model);
* the roofline: the same GEMM flops at the machine's measured single-thread
  GEMM rate, plus one exp over the patch-hypothesis block at the measured
  exp rate (what the GEMM kernel could at best reach);
* the ratio to the L = 5 iteration of the kernel ``choose_estep`` picks.

The GEMM kernel at L = 41 needs its H x L^2 template table (1.4 GB at
K = 16) and is skipped unless ``--gemm-41``.

Part 2 (``--recovery``): a default-settings fit (``ApproxEMEstimator(L,
random_state=seed, n_jobs=--jobs)``, plus the JSON parameters of ``--kw``)
at N=4096 (or ``--recovery-size``), density 0.1, for each SNR, of a
band-limited particle: the truth is ``make_target`` in
``FourierBesselBasis(L, bandlimit=f * lambda_max)``, ``f``
(``--truth-fraction``) of the default basis's Nyquist band limit (0.47815:
the 61 of 281 functions of issue 12's L = 21 particle, 232 of 1055 at L =
41; ``1``: the whole default basis, a white spectrum up to Nyquist). After
every iteration (a SQUAREM cycle) it prints the fit's elapsed time (the
error computations excluded), the grid's K, the rotation-aligned relative
errors on the images and by eq. (19), with the truth expanded exactly into
the default basis, and the gain of the mean log-likelihood per patch
(``inf`` or negative where a grid or the precision changes); ``--budget``
stops a fit after the iteration that crosses it (reported as such). At the
end: time, status and the peak resident memory of the fit (``VmHWM`` reset
before it, Linux), and how far it rose above the resident memory at the
start, when the measurement and the interpreter are already resident: the
fit's memory beyond the data.

Usage::

    python benchmarks/bench_sizes.py --cost --size 1050
    python benchmarks/bench_sizes.py --recovery --image-size 21 --snr 1 3 10 --budget 900
    taskset -c 1 python benchmarks/bench_sizes.py --recovery --image-size 41 --snr 3 --jobs 1
"""

import argparse
import json
import resource
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target,
                      relative_error)
from mtdlearn.likelihood.fft_estep import (build_fft_patch_model, choose_estep, estep_statistics_fft,
                                fft_grid_size)
from mtdlearn.likelihood.hypotheses import HypothesisSpace
from mtdlearn.imaging.shifts import density_to_shift_probabilities
from mtdlearn.likelihood.patch_model import build_patch_model
from mtdlearn.likelihood.statistics import estep_statistics
from mtdlearn.likelihood.m_step import m_step
from mtdlearn.data.patches import PatchData


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


def _rss_mb(field):
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak():
    """Reset the peak resident memory (``VmHWM``) to the current one, if Linux allows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Stop(Exception):
    pass


def recovery(L, snrs, size, truth_fraction, seeds, max_iter, budget, n_jobs, kw=None):
    """Default-settings fits of a band-limited particle; prints one line per iteration."""
    full = FourierBesselBasis(L)
    truth_basis = (FourierBesselBasis(L, bandlimit=truth_fraction * np.max(full.roots))
                   if truth_fraction < 1 else full)
    print(f"L = {L}, N = {size}, density 0.1, truth: {truth_basis.n_functions} of the "
          f"{full.n_functions} default functions (band limit {truth_fraction:g} of Nyquist); "
          f"ApproxEMEstimator({L}, random_state=seed, n_jobs={n_jobs}"
          + "".join(f", {k}={v!r}" for k, v in (kw or {}).items()) + f"), budget {budget:g} s",
          flush=True)
    for snr in snrs:
        for seed in seeds:
            coef = make_target(truth_basis, random_state=seed)
            X, _ = make_measurement(coef, truth_basis, size, snr=snr, density=0.1,
                                    random_state=seed)
            truth = full.expand(truth_basis.evaluate(coef))   # exact: nested bases
            del coef
            em = ApproxEMEstimator(L, max_iter=max_iter, n_jobs=n_jobs, random_state=seed,
                                   **(kw or {}))
            step, clock = em._step, {"excluded": 0.0}
            print(f"SNR {snr:g}, seed {seed}: measurement {X.nbytes / 2**20:.0f} MB, "
                  f"resident before the fit {_rss_mb('VmRSS'):.0f} MB", flush=True)
            print(f"{'iter':>5} {'time s':>8} {'K':>4} {'img':>7} {'coef':>7} {'gain':>10}",
                  flush=True)

            def timed_step(prepared, state, objective, stats, n_jobs, step=step, clock=clock):
                out = step(prepared, state, objective, stats, n_jobs)
                elapsed = time.perf_counter() - clock["t0"] - clock["excluded"]
                t = time.perf_counter()   # the errors are not part of the fit's time
                c = out[0].coef
                clock["n"] = clock.get("n", 0) + 1
                print(f"{clock['n']:>5} {elapsed:>8.1f} "
                      f"{prepared.hypotheses.n_rotations:>4} "
                      f"{relative_error(truth, c, full, domain='image'):>7.4f} "
                      f"{relative_error(truth, c, full):>7.4f} {out[1] - objective:>10.3e}",
                      flush=True)
                clock["excluded"] += time.perf_counter() - t
                if elapsed > budget:
                    raise _Stop
                return out

            em._step = timed_step
            reset = _reset_peak()
            before = _rss_mb("VmRSS")
            clock["t0"] = time.perf_counter()
            stopped = False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    em.fit(X)
                except _Stop:
                    stopped = True
            elapsed = time.perf_counter() - clock["t0"] - clock["excluded"]
            peak = _rss_mb("VmHWM")
            status = ("stopped at the budget, not converged" if stopped else
                      f"{'converged' if em.converged_ else 'not converged'} after "
                      f"{em.n_iter_} iterations")
            print(f"SNR {snr:g}, seed {seed}: {elapsed:.1f} s, {status}; peak resident "
                  f"{peak:.0f} MB ({'during the fit' if reset else 'whole process'}), "
                  f"{peak - before:.0f} MB above the resident {before:.0f} MB at the start",
                  flush=True)
            if not stopped:
                print(f"final error: img {relative_error(truth, em.coef_, full, 'image'):.4f}"
                      f" coef {relative_error(truth, em.coef_, full):.4f}", flush=True)
            del X, em


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
    ap.add_argument("--truth-fraction", type=float, default=0.47815,
                    help="the truth's band limit, a fraction of the default basis's (1: the "
                         "whole default basis, a white spectrum up to Nyquist)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--budget", type=float, default=np.inf,
                    help="stop a fit after the iteration that crosses this many seconds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kw", default="{}",
                    help="more estimator parameters for --recovery, as JSON (not the defaults "
                         "then), e.g. '{\"rotations\": 64, \"refinement\": null}'")
    args = ap.parse_args()
    if args.cost:
        cost(args.size, args.sizes, args.rotations, args.repeat, args.gemm_41)
    if args.recovery:
        recovery(args.image_size, args.snr, args.recovery_size, args.truth_fraction,
                 args.seeds, args.max_iter, args.budget, args.jobs, json.loads(args.kw))


if __name__ == "__main__":
    main()
