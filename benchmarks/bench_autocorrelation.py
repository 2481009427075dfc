"""Benchmark of autocorrelation analysis: the measurement pass and the fit.

Prints, for ``measurement_autocorrelations`` on simulated N x N measurements
(L = 5, 10 coefficients, density 0.04, SNR 5) and for ``fit_autocorrelations``
(one start):

* wall-clock seconds (best of ``--repeat``) and process CPU seconds;
* ``tracemalloc`` peak: the largest amount of memory allocated through
  Python/numpy *during the call*, beyond what existed before (the
  measurement itself is not counted);
* ``ru_maxrss``: the process's peak resident set size so far (includes the
  interpreter, the libraries and the measurement), in MiB;
* a roofline-style reference: the pass does ``L**3 (L + 1)`` GEMM flops per
  pixel (the upper block triangle of the ``L*L x L*L`` rank-one updates),
  printed as the rate achieved next to the rate of a large square DGEMM on
  this machine (one thread and all threads), which bounds what the pass can
  reach; the pass also streams about ``2 * 8 * L*L`` bytes per pixel through
  cache (window and product buffers), next to the measured copy bandwidth.

The fit's cost is independent of N (it only sees the 1 + L**2 + L**4
moments).  The machine may be shared: compare CPU seconds to wall seconds.

``--start L`` runs instead the EM's autocorrelation start at image size
``L`` (issue 25: at ``L = 21`` with the default basis, 281 functions, the
target is 60 s on 2 cores): for each target kind (``make_target``'s random
coefficients, ``make_particle``'s particle) and seed, an N x N measurement
(``--sizes``, first value; default 4096 in this mode) at SNR 3 and density
0.1, and ``AutocorrelationEstimator`` fitted as
``AutocorrelationInitializer()`` runs it (one random start,
``shift_radius="auto"``, ``sigma**2`` estimated), with the parameters of
``--kw`` (JSON) on top.  Each row: the measurement pass's and the fit's
wall and CPU seconds, the L-BFGS-B iterations, the final cost, and the
start's error against the truth (eq. 19, and after rotation and
translation).

Examples
--------
    python benchmarks/bench_autocorrelation.py
    python benchmarks/bench_autocorrelation.py --sizes 1000 4000 --repeat 3
    python benchmarks/bench_autocorrelation.py --start 21 --seeds 0 1 2
"""

import argparse
import json
import resource
import time
import tracemalloc

import numpy as np

from mtdlearn import AutocorrelationEstimator, FourierBesselBasis, make_particle
from mtdlearn.autocorrelation.fit import fit_autocorrelations
from mtdlearn.autocorrelation.moments import _check_shift_radius, measurement_autocorrelations
from mtdlearn.data.patches import as_patch_source
from mtdlearn.data.simulate import make_measurement, make_target
from mtdlearn.metrics import relative_error


def _machine_reference():
    """GFLOP/s of a 1500^3 DGEMM (1 thread, all threads) and GB/s of a
    large array copy."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 1500, 1500))
    rates = []
    for limit in (1, None):
        with threadpool_limits(limits=limit, user_api="blas"):
            A @ B
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                A @ B
                best = min(best, time.perf_counter() - t0)
        rates.append(2 * 1500**3 / best / 1e9)
    src = rng.standard_normal(2**24)  # 128 MiB
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return rates[0], rates[1], 2 * src.nbytes / best / 1e9


def _maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _timed(fn, repeat, trace):
    """Best wall time, CPU time of that run, and tracemalloc peak (MiB) of one
    separate traced run (tracing slows numpy allocation bookkeeping a little,
    so timings come from untraced runs)."""
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    peak = float("nan")
    if trace:
        tracemalloc.start()
        tracemalloc.reset_peak()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, best_wall, best_cpu, peak


def _start_benchmark(L, size, seeds, targets, kw, n_jobs):
    """The EM's autocorrelation start at image size ``L`` (see the module docstring)."""
    basis = FourierBesselBasis(L)
    print(f"autocorrelation start: L={L}, p={basis.n_functions}, N={size}, SNR 3, "
          f"density 0.1, kw {kw} (wall and CPU seconds; the machine may be shared)")
    print(f"{'target':>8} {'seed':>4} {'pass wall':>9} {'cpu':>7} {'fit wall':>8} {'cpu':>7} "
          f"{'iter':>5} {'cost':>12} {'eq.19':>7} {'rot+tr':>7} {'density':>8} {'conv':>5}")
    for target in targets:
        for seed in seeds:
            coef = (make_target(basis, random_state=seed) if target == "random" else
                    make_particle(basis, random_state=seed))
            X, _ = make_measurement(coef, basis, size, density=0.1, snr=3.0,
                                    random_state=seed)
            est = AutocorrelationEstimator(L, basis=basis, random_state=seed, n_jobs=n_jobs,
                                           **kw)
            radius = _check_shift_radius(est.get_params()["shift_radius"], L)
            # the measurement pass, stored in the patch source as the estimator's fit does
            # (and as the EM shares it with its initializer), then the fit proper
            data = as_patch_source([X], L)
            _, pass_wall, pass_cpu, _ = _timed(
                lambda: data.memoize(measurement_autocorrelations, L, working_memory=None,
                                     n_jobs=n_jobs, shift_radius=radius), 1, False)
            est, wall, cpu, _ = _timed(lambda: est.fit(data), 1, False)
            e19 = relative_error(coef, est.coef_, basis)
            etr = relative_error(coef, est.coef_, basis, align="rotation+translation")
            print(f"{target:>8} {seed:>4} {pass_wall:>9.1f} {pass_cpu:>7.1f} {wall:>8.1f} "
                  f"{cpu:>7.1f} {est.n_iter_:>5} {est.cost_:>12.6e} {e19:>7.4f} {etr:>7.4f} "
                  f"{est.density_:>8.4f} {str(est.converged_):>5}", flush=True)
            X = data = None   # free them before the next draw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="measurement sides N (default: 1000 4000 10000; 4096 with --start)")
    parser.add_argument("--image-size", type=int, default=5, help="L (default 5)")
    parser.add_argument("--n-coefficients", type=int, default=10)
    parser.add_argument("--snr", type=float, default=5.0)
    parser.add_argument("--density", type=float, default=0.04)
    parser.add_argument("--repeat", type=int, default=1, help="timing repeats (best kept)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads of the pass (with --start, of the fit too)")
    parser.add_argument("--working-memory", type=float, default=None, help="MiB")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=None, metavar="L",
                        help="benchmark the EM's autocorrelation start at image size L instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of --start (default 0 1 2)")
    parser.add_argument("--targets", nargs="+", default=["random", "particle"],
                        choices=["random", "particle"], help="targets of --start")
    parser.add_argument("--kw", default="{}",
                        help="JSON parameters of the AutocorrelationEstimator of --start")
    args = parser.parse_args(argv)
    if args.start is not None:
        _start_benchmark(args.start, (args.sizes or [4096])[0], args.seeds, args.targets,
                         json.loads(args.kw), args.n_jobs)
        return
    args.sizes = args.sizes or [1000, 4000, 10000]

    basis = FourierBesselBasis(args.image_size, n_coefficients=args.n_coefficients)
    L = basis.image_size
    coef = make_target(basis, random_state=args.seed)
    flops_per_pixel = L**3 * (L + 1)

    print(f"L={L}, p={basis.n_functions}, SNR={args.snr}, density={args.density}")
    gemm1, gemm_all, bandwidth = _machine_reference()
    print(f"machine reference: DGEMM {gemm1:.1f} GFLOP/s (1 thread), {gemm_all:.1f} GFLOP/s "
          f"(all threads); copy bandwidth {bandwidth:.1f} GB/s (read + write)")
    print(f"measurement_autocorrelations ({flops_per_pixel} GEMM flops/pixel)")
    print(f"{'N':>6} {'wall s':>8} {'cpu s':>8} {'ns/px':>7} {'GFLOP/s':>8} "
          f"{'trace peak MiB':>15} {'maxrss MiB':>11} {'input MiB':>10}")
    measured = None
    for N in args.sizes:
        X, truth = make_measurement(coef, basis, N, density=args.density, snr=args.snr,
                                    random_state=args.seed)
        measured, wall, cpu, peak = _timed(
            lambda: measurement_autocorrelations(X, L, working_memory=args.working_memory,
                                                 n_jobs=args.n_jobs),
            args.repeat, not args.no_trace)
        print(f"{N:>6} {wall:>8.2f} {cpu:>8.2f} {wall / X.size * 1e9:>7.1f} "
              f"{flops_per_pixel * X.size / wall / 1e9:>8.1f} {peak:>15.1f} "
              f"{_maxrss_mib():>11.0f} {X.nbytes / 2**20:>10.0f}")
        last_truth = truth
        X = None   # free it before the next draw

    print("fit_autocorrelations (one start, noise variance estimated, from a random target)")
    start = make_target(basis, random_state=args.seed + 1)
    for label, nv in (("sigma2 estimated", None), ("sigma2 fixed", last_truth.noise_variance)):
        res, wall, cpu, peak = _timed(
            lambda: fit_autocorrelations(measured, basis, 0.03, start, noise_variance=nv),
            args.repeat, not args.no_trace)
        err = relative_error(coef, res.coef, basis)
        print(f"  {label:<17} wall {wall:.2f} s, cpu {cpu:.2f} s, trace peak {peak:.2f} MiB, "
              f"{res.n_iter} iterations, {res.n_eval} evaluations, converged={res.converged}, "
              f"density {res.density:.4f}, sigma2 {res.noise_variance:.4f} "
              f"(true {last_truth.noise_variance:.4f}), relative error {err:.4f} "
              f"(N={args.sizes[-1]})")


if __name__ == "__main__":
    main()
