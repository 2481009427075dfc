"""Approximate EM on micrographs stored as .mrc: in process against a Dask cluster.

Writes ``--n-micrographs`` simulated micrographs of ``--size``^2 pixels
(L = 5, 10 coefficients, density 0.04, SNR 5) as float32 .mrc files, then
fits them three ways from the files:

* ``cluster-2``: a ``LocalCluster`` of 2 single-thread worker processes,
  ``fit(read_micrographs(paths))``, with Dask's default settings or, with
  ``--quiet-workers``, as ``mtdlearn fit --workers`` starts it (no worker
  profiler, event-loop ticks every second: ``mtdlearn.data._dask.QUIET_WORKERS``);
* ``cluster-1``: the same with 1 worker;
* ``in-proc-2`` and ``in-proc-1``: ``fit(paths)``, memory-mapped, with
  ``n_jobs=2`` threads and ``n_jobs=1`` (the same cores as the clusters).

The issue's target: each cluster row at most 1.25x the in-process row on the
same number of cores.

For each it prints seconds per EM iteration (``(t(max_iter=n) -
t(max_iter=0)) / n``: the iterations alone, without reading the files,
checking them and the start; after one warm-up fit), the cost per patch-hypothesis per core
(seconds * cores / (N_d * H), H = K (2L-1)^2 + 1), the client's peak RSS
and the workers' peak RSS.  The cluster runs come first, so the client's
peak RSS is the one of a client that never read the pixels; the in-process
run reads them into the same process afterwards.

Usage::

    python benchmarks/bench_dask.py                   # 8 micrographs of 1024^2, K = 16
    python benchmarks/bench_dask.py --n-micrographs 32 --size 2048   # the issue's size
"""

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings

import numpy as np


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _write(folder, n, size, seed):
    import mrcfile

    from mtdlearn import FourierBesselBasis, make_measurement, make_target

    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=seed)
    paths = []
    for i in range(n):
        M, _ = make_measurement(coef, basis, size, density=0.04, snr=5, random_state=seed + i)
        path = os.path.join(folder, f"mic{i:04d}.mrc")
        mrcfile.new(path, M.astype(np.float32)).close()
        paths.append(path)
    return paths


def _fit_seconds(make_input, basis, rotations, max_iter, n_jobs):
    from sklearn.exceptions import ConvergenceWarning

    from mtdlearn import ApproxEMEstimator

    times = []
    for n in (0, 0, max_iter):  # the first run warms up (imports, worker start-up)
        est = ApproxEMEstimator(5, basis=basis, rotations=rotations, max_iter=n, tol=0.0,
                                n_jobs=n_jobs, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            est.fit(make_input())
            times.append(time.perf_counter() - t0)
    return times[1], (times[2] - times[1]) / max_iter, est


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-micrographs", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rotations", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="cluster-2,cluster-1,in-proc-2,in-proc-1",
                        help="comma-separated subset of the four runs")
    parser.add_argument("--quiet-workers", action="store_true",
                        help="start the clusters as `mtdlearn fit --workers` does "
                             "(mtdlearn.data._dask.QUIET_WORKERS: no worker profiler, 1 s ticks) "
                             "instead of with Dask's defaults")
    args = parser.parse_args(argv)
    args.modes = args.modes.split(",")

    from distributed import Client, LocalCluster

    from mtdlearn.data._dask import NO_HTTP_PORT, local_cluster
    from mtdlearn.data.io import read_micrographs

    L, K = 5, args.rotations
    H = K * (2 * L - 1) ** 2 + 1
    n_patches = args.n_micrographs * (args.size // L) ** 2
    print(f"{args.n_micrographs} micrographs of {args.size}^2 (.mrc, float32), L={L}, K={K}, "
          f"H={H}, N_d={n_patches}, {args.max_iter} iterations; {os.cpu_count()} CPUs")
    print(f"{'mode':<11} {'start s':>8} {'s/iter':>8} {'s/(patch*hyp*core)':>19} "
          f"{'client MB':>10} {'worker MB':>10}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        # simulate and write in a child process: the client's peak RSS below is
        # then that of a process that never held the pixels
        from concurrent.futures import ProcessPoolExecutor

        from mtdlearn import FourierBesselBasis

        with ProcessPoolExecutor(1) as pool:
            paths = pool.submit(_write, folder, args.n_micrographs, args.size,
                                args.seed).result()
        basis = FourierBesselBasis(5, n_coefficients=10)
        rss_after_writing = _rss_mb()
        for workers in (2, 1):
            if f"cluster-{workers}" not in args.modes:
                continue
            if args.quiet_workers:

                cluster = local_cluster(workers)
            else:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, scheduler_kwargs=NO_HTTP_PORT)
            with cluster, Client(cluster) as client:
                start, per_iter, est = _fit_seconds(lambda: read_micrographs(paths), basis, K,
                                                    args.max_iter, None)
                worker_mb = max(client.run(_rss_mb).values())
            name = f"cluster-{workers}"
            results[name] = est
            cost = per_iter * workers / (n_patches * H)
            print(f"{name:<11} {start:8.2f} {per_iter:8.2f} {cost:19.3e} "
                  f"{_rss_mb():10.0f} {worker_mb:10.0f}", flush=True)
        for jobs in (2, 1):
            if f"in-proc-{jobs}" not in args.modes:
                continue
            start, per_iter, est = _fit_seconds(lambda: paths, basis, K, args.max_iter, jobs)
            name = f"in-proc-{jobs}"
            results[name] = est
            cost = per_iter * jobs / (n_patches * H)
            print(f"{name:<11} {start:8.2f} {per_iter:8.2f} {cost:19.3e} "
                  f"{_rss_mb():10.0f} {'-':>10}", flush=True)
    first = next(iter(results.values()))
    same = all(np.array_equal(r.coef_, first.coef_) for r in results.values())
    print(f"client RSS before the fits (files written by a child process): "
          f"{rss_after_writing:.0f} MB; "
          f"data {n_patches * L * L * 4 / 2**20:.0f} MB as float32")
    print(f"all {len(results)} fits bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
