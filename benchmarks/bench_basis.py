"""Cost and conditioning of the default ``FourierBesselBasis(L)`` for growing L.

For each image size L this prints:

* ``build_s``: wall time of the constructor ``FourierBesselBasis(L)``;
* ``matrix_s``: the first access to ``basis.matrix`` (the evaluation matrix
  is built on first use; 0 for a module that builds it in the constructor);
* ``expand_s``: the first ``basis.expand`` of one image (includes the
  least-squares factorization, likewise built on first use);
* ``ready_s``: the sum, the cost of a basis ready for an estimator;
* ``p``: the number of functions, ``pixels``: the pixels inside the disk;
* ``cond``: ``np.linalg.cond(basis.matrix[basis.mask.ravel()])`` (not timed);
* ``rel_err``: ``max |expand(evaluate(c)) - c| / max |c|`` for a random ``c``.

A constructor that raises is reported with the time it took to raise and
its message.  Times are the best of ``--repeat`` runs, each on a new object.
BLAS runs on ``--threads`` threads (default 1: on a busy two-core machine
more threads make LAPACK slower, not faster).

``--module PATH`` measures another version of ``mtdlearn/basis.py`` (loaded
as a module of the installed ``mtdlearn`` package), e.g. the code before a
change::

    git show main:mtdlearn/basis.py > /tmp/old_basis.py
    python benchmarks/bench_basis.py --module /tmp/old_basis.py

``--rule nyquist`` passes ``bandlimit=np.pi * (L // 2 + 1)`` for L >= 11 (the
functions of the current default), so that two versions can be timed on the
same basis.

Usage::

    python benchmarks/bench_basis.py                       # L in {5, 11, 13, 21, 41, 65}
    python benchmarks/bench_basis.py --sizes 5 11 21 --repeat 3
"""

import argparse
import importlib.util
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits


def load_basis_class(path):
    """``FourierBesselBasis`` of the installed package, or of the file ``path``."""
    if path is None:
        from mtdlearn import FourierBesselBasis

        return FourierBesselBasis
    # a submodule of mtdlearn, so that its relative imports resolve
    spec = importlib.util.spec_from_file_location("mtdlearn._bench_basis_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.FourierBesselBasis


def parameters(L, rule):
    if rule == "nyquist" and L >= 11:
        return {"image_size": L, "bandlimit": np.pi * (L // 2 + 1)}
    return {"image_size": L}


def bench(cls, L, rule, repeat, seed=0):
    kwargs = parameters(L, rule)
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((L, L))
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            basis = cls(**kwargs)
        except ValueError as exc:
            return {"L": L, "build_s": time.perf_counter() - t0, "error": str(exc)}
        t1 = time.perf_counter()
        basis.matrix
        t2 = time.perf_counter()
        basis.expand(image)
        t3 = time.perf_counter()
        times = (t1 - t0, t2 - t1, t3 - t2)
        if best is None or sum(times) < sum(best):
            best = times
    inside = basis.matrix[basis.mask.ravel()]
    coef = rng.standard_normal(basis.n_functions)
    err = np.abs(basis.expand(basis.evaluate(coef)) - coef).max() / np.abs(coef).max()
    return {
        "L": L,
        "build_s": best[0],
        "matrix_s": best[1],
        "expand_s": best[2],
        "ready_s": sum(best),
        "p": basis.n_functions,
        "pixels": int(basis.mask.sum()),
        "cond": np.linalg.cond(inside),
        "rel_err": err,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 11, 13, 21, 41, 65],
                        help="image sizes L, odd (default: 5 11 13 21 41 65)")
    parser.add_argument("--rule", choices=["default", "nyquist"], default="default",
                        help="default: FourierBesselBasis(L); nyquist: bandlimit=pi*(L//2+1) "
                             "for L >= 11 (default: default)")
    parser.add_argument("--module", default=None,
                        help="path of another version of mtdlearn/basis.py to measure")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed runs per size; the best is reported (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1 or any(L < 3 or L % 2 == 0 for L in args.sizes):
        parser.error("--repeat and --threads must be >= 1 and every size odd and >= 3")

    cls = load_basis_class(args.module)
    print(f"FourierBesselBasis from {args.module or 'mtdlearn'}; rule {args.rule}; "
          f"{args.threads} BLAS thread(s); best of {args.repeat}")
    print(f"{'L':>3} {'build_s':>8} {'matrix_s':>8} {'expand_s':>8} {'ready_s':>8} "
          f"{'p':>5} {'pixels':>6} {'cond':>8} {'rel_err':>8}")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for L in args.sizes:
            r = bench(cls, L, args.rule, args.repeat)
            if "error" in r:
                print(f"{L:>3} {r['build_s']:>8.3f}  raised: {r['error']}", flush=True)
                continue
            print(f"{L:>3} {r['build_s']:>8.3f} {r['matrix_s']:>8.3f} {r['expand_s']:>8.3f} "
                  f"{r['ready_s']:>8.3f} {r['p']:>5} {r['pixels']:>6} {r['cond']:>8.3g} "
                  f"{r['rel_err']:>8.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
