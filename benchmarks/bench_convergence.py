"""Time to accuracy of the approximate EM's variants.

For each variant this prints, and plots to a PNG, the relative error of the
coefficients and the mean log-likelihood per patch against wall time, from
the same autocorrelation-analysis start, with the same stopping rule (gain of
the mean log-likelihood per patch below ``--tol``, default 1e-8):

* ``plain``   -- float64, one E-step + one M-step per iteration (wave 1);
* ``float32`` -- every E-step in float32;
* ``auto``    -- ``dtype="auto"``: float32 E-steps, float64 finish;
* ``squarem`` -- SQUAREM (S3) in float64;
* ``incremental`` -- incremental EM passes (blocks of 8192 patches), then
  SQUAREM, ``dtype="auto"``;
* ``default`` -- the estimator's defaults (``dtype="auto"``, SQUAREM).

Settings are the demo's (L=5, 10 coefficients, density 0.04, SNR 5, K=16,
N=1000) unless told otherwise; ``--quick`` runs N=400, K=8.  Every timing is
the minimum over ``--repeats`` runs (the machine may be shared).

Usage::

    python benchmarks/bench_convergence.py --quick
    python benchmarks/bench_convergence.py --size 1000 --rotations 16
    python benchmarks/bench_convergence.py --size 4000 --rotations 16 --repeats 1
    python benchmarks/bench_convergence.py --headline --variants default --repeats 1 \
        --budget 600 --reference-error 0.0032

The last line prints, for each variant, the time from which its error stays
within 5 % of the reference's final error (plain's if it finished, or
``--reference-error``: 0.0032 is plain EM's error at tol 1e-8 in the
headline run, ``docs/results.rst``).

``--stopping SEEDS`` compares the stopping rules instead, on the headline's
protocol (SNR 2, K=16, the 5-start autocorrelation start; ``--size``, 10000
for the paper's) for each seed: the default (``tol="auto"``, the
statistical rule), the gain rule it replaced (``tol=4e-8 L**2``, the
paper's 1e-6), and ``tol=1e-8``, each from the same start, all else
default.  It prints each rule's error, E-steps and time, and the ratios
the targets are stated in (error against tol 1e-8's, time against the gain
rule's; ``--rules auto`` runs the default alone)::

    python benchmarks/bench_convergence.py --stopping 11,12,13,14,15 --size 4000

With ``--stopping-figure FILE`` it also plots each seed's error against
time under the three rules (one panel per seed; the rules follow the same
path and differ in where they stop, up to the float64 switch).
"""

import argparse
import time
import warnings

import numpy as np

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, FixedInitializer,
                      FourierBesselBasis, RandomInitializer, make_measurement, make_target,
                      relative_error)

VARIANTS = {
    "plain": dict(dtype=np.float64, acceleration=None, refinement=None),
    "float32": dict(dtype=np.float32, acceleration=None),
    "auto": dict(dtype="auto", acceleration=None),
    "squarem": dict(dtype=np.float64, acceleration="squarem"),
    "incremental": dict(acceleration="incremental"),
    "default": dict(),
}


class _OverBudget(Exception):
    """A variant ran past ``--budget`` seconds: its trace so far is kept."""


class _Traced(ApproxEMEstimator):
    """Records (seconds since the start, error, log-likelihood, E-steps) after
    each iteration; stops (raising _OverBudget) once past ``_budget`` seconds."""

    _budget = np.inf

    def _run_start(self, prepared, state, seed, n_jobs):
        self._trace = [(0.0, relative_error(self._truth, state.coef, self.basis_), np.nan, 0)]
        self._t0 = time.perf_counter()
        return super()._run_start(prepared, state, seed, n_jobs)

    def _step(self, prepared, state, objective, stats, n_jobs):
        state, objective, stats = super()._step(prepared, state, objective, stats, n_jobs)
        t = time.perf_counter() - self._t0
        self._trace.append((t, relative_error(self._truth, state.coef, self.basis_),
                            objective, state.run.n_e_steps))
        if t > self._budget:
            raise _OverBudget
        return state, objective, stats


def _measurement(basis, args, seed):
    """The target and its measurement at ``--size`` and ``--snr``, density 0.04."""
    coef = make_target(basis, random_state=seed)
    X, truth = make_measurement(coef, basis, args.size, density=0.04, snr=args.snr,
                                random_state=seed)
    return coef, X, truth


def _headline_start(basis, X, truth, n_jobs):
    """examples/plot_headline.py's start: autocorrelation analysis, 5 random starts."""
    return AutocorrelationEstimator(5, basis=basis, n_init=5, noise_variance=truth.noise_variance,
                                    initializer=RandomInitializer(density=0.03),
                                    random_state=0, n_jobs=n_jobs).fit(X)


def run(args):
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef, X, truth = _measurement(basis, args, args.seed)
    t_start = time.perf_counter()
    if args.headline:
        ac = _headline_start(basis, X, truth, args.n_jobs)
    else:
        ac = AutocorrelationEstimator(5, basis=basis, noise_variance=truth.noise_variance,
                                      random_state=args.seed).fit(X)
    t_start = time.perf_counter() - t_start
    init = FixedInitializer(ac.coef_, ac.shift_probabilities_)
    print(f"N={args.size} SNR {args.snr} K={args.rotations} tol {args.tol:g}, "
          f"n_jobs={args.n_jobs}, min of {args.repeats} run(s); autocorrelation start error "
          f"{relative_error(coef, ac.coef_, basis):.5f} in {t_start:.1f} s (not in the "
          "times below)")
    print(f"{'variant':9s} {'error':>8s} {'log-lik':>16s} {'iter':>5s} {'E-steps':>7s} "
          f"{'time s':>8s} {'s/E-step':>8s}")
    results = {}
    for name in args.variants:
        best = None
        for _ in range(args.repeats):
            em = _Traced(5, basis=basis, rotations=args.rotations,
                         noise_variance=truth.noise_variance, initializer=init,
                         max_iter=args.max_iter, tol=args.tol, random_state=args.seed,
                         n_jobs=args.n_jobs, **VARIANTS[name])
            em._truth, em._budget = coef, args.budget
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    em.fit(X)
                    em._status = "" if em.converged_ else "  (not converged)"
                except _OverBudget:
                    em._status = f"  (stopped: over the {args.budget:g} s budget)"
            if best is None or em._trace[-1][0] < best._trace[-1][0]:
                best = em
        results[name] = best
        t, err, loglik, n_e_steps = best._trace[-1]
        print(f"{name:9s} {err:8.5f} {loglik:16.10f} {len(best._trace) - 1:5d} "
              f"{n_e_steps:7d} {t:8.1f} {t / n_e_steps:8.3f}{best._status}", flush=True)
    if "plain" in results:
        ref = results["plain"]._trace[-1][0]
        print("wall time relative to plain: " + ", ".join(
            f"{name} {em._trace[-1][0] / ref:.2f}" for name, em in results.items()))
    # time to accuracy: from when on each variant stays within 5 % of the
    # final error of the reference (plain if it finished, else the first
    # variant that converged)
    finished = [n for n in ("plain", *results) if n in results and not results[n]._status]
    if finished or args.reference_error:
        if args.reference_error:
            ref_name, target = "the reference", 1.05 * args.reference_error
        else:
            ref_name = finished[0]
            target = 1.05 * results[ref_name]._trace[-1][1]
        parts = []
        for name, em in results.items():
            tr = np.asarray(em._trace)
            above = np.flatnonzero(tr[:, 1] > target)
            k = above[-1] + 1 if above.size else 0
            parts.append(f"{name} {tr[k, 0]:.1f} s" if k < len(tr) else f"{name} never")
        print(f"time to stay within 5 % of {ref_name}'s final error "
              f"({target / 1.05:.5f}): " + ", ".join(parts))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        final = max(em._trace[-1][2] for em in results.values())
        for name, em in results.items():
            tr = np.asarray(em._trace)
            ax1.semilogx(tr[1:, 0], tr[1:, 1], label=name)
            ax2.semilogy(tr[1:, 0], np.maximum(final - tr[1:, 2], 1e-12), label=name)
        ax1.set(xlabel="wall time (s, log scale)", ylabel="relative error", title="error")
        ax2.set(xlabel="wall time (s)", ylabel="best log-lik - log-lik (per patch)",
                title="log-likelihood gap")
        ax1.legend()
        fig.suptitle(f"time to accuracy: N={args.size}, SNR {args.snr}, K={args.rotations}")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=100)
        print(f"wrote {args.figure}")
    return results


def stopping(args):
    """The stopping rules, seed by seed (``--stopping``)."""
    basis = FourierBesselBasis(5, n_coefficients=10)
    rules = {name: tol for name, tol in {"auto": "auto", "gain 1e-6": 1e-6, "tol 1e-8": 1e-8}.items()
             if name.split()[0] in args.rules}
    print(f"N={args.size} SNR {args.snr} K={args.rotations}, n_jobs={args.n_jobs}; "
          "each rule from the same autocorrelation start (its time not included)")
    print(f"{'seed':>4s} {'rule':10s} {'error':>8s} {'iter':>5s} {'E-steps':>7s} "
          f"{'time s':>7s} {'remaining':>9s}  err/err(1e-8)  time/time(gain)")
    rows, traces = [], {}
    for seed in args.stopping:
        coef, X, truth = _measurement(basis, args, seed)
        ac = _headline_start(basis, X, truth, args.n_jobs)
        init = FixedInitializer(ac.coef_, ac.shift_probabilities_)
        res = {}
        for name, tol in rules.items():
            em = _Traced(5, basis=basis, rotations=args.rotations,
                         noise_variance=truth.noise_variance, initializer=init,
                         tol=tol, max_iter=args.max_iter, random_state=seed,
                         n_jobs=args.n_jobs)
            em._truth = coef
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                em.fit(X)
            res[name] = (relative_error(coef, em.coef_, basis), em.n_iter_, em.n_e_steps_,
                         time.perf_counter() - t, em.remaining_change_)
            traces.setdefault(seed, {})[name] = np.asarray(em._trace)
        ref_err, ref_time = res.get("tol 1e-8", [np.nan])[0], res.get("gain 1e-6", [0] * 4)[3]
        for name, (err, n_iter, n_e, t, rem) in res.items():
            print(f"{seed:4d} {name:10s} {err:8.5f} {n_iter:5d} {n_e:7d} {t:7.1f} {rem:9.3g}"
                  f"  {err / ref_err:13.3f}  {t / ref_time if ref_time else np.nan:15.2f}",
                  flush=True)
        if len(res) < 3:   # a subset of the rules: no ratios to summarize
            continue
        rows.append((res["auto"][0] / res["tol 1e-8"][0], res["gain 1e-6"][0] / res["tol 1e-8"][0],
                     res["auto"][3] / res["gain 1e-6"][3]))
    rows = np.asarray(rows)
    if not len(rows):
        return rows
    print(f"auto: worst error ratio {rows[:, 0].max():.3f} (gain rule: {rows[:, 1].max():.3f}); "
          f"median time ratio {np.median(rows[:, 2]):.2f}")
    if args.stopping_figure:
        _plot_stopping(traces, args)
    return rows


def _plot_stopping(traces, args):
    """Error against time under each rule, one panel per seed; a marker where each stops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(traces), figsize=(4 * len(traces), 3.4), squeeze=False,
                             sharey=True)
    styles = {"tol 1e-8": ("0.6", "-", "s"), "gain 1e-6": ("C1", "--", "v"),
              "auto": ("C0", "-", "o")}
    for ax, (seed, by_rule) in zip(axes[0], traces.items()):
        for name, trace in by_rule.items():
            color, line, marker = styles[name]
            label = {"auto": 'tol="auto" (new default)', "gain 1e-6": "gain 1e-6 (old default)",
                     "tol 1e-8": "tol 1e-8"}[name]
            ax.semilogy(trace[:, 0], trace[:, 1], line, color=color, label=label)
            ax.plot(trace[-1, 0], trace[-1, 1], marker, color=color, ms=7)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("EM time (s)")
    axes[0, 0].set_ylabel("relative error (eq. 19)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"N={args.size}, SNR {args.snr:g}, K={args.rotations}; markers: the stops",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(args.stopping_figure, dpi=100)
    print(f"wrote {args.stopping_figure}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--rotations", type=int, default=16)
    p.add_argument("--snr", type=float, default=5.0)
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--max-iter", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=np.inf,
                   help="stop a variant after this many seconds (reported as stopped)")
    p.add_argument("--reference-error", type=float, default=None,
                   help="final error to measure the time to accuracy against (default: "
                        "plain's, or the first converged variant's)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--figure", default="time_to_accuracy.png")
    p.add_argument("--quick", action="store_true", help="N=400, K=8")
    p.add_argument("--headline", action="store_true",
                   help="the paper's headline run: N=10000, SNR 2, K=16, seed 2021, "
                        "autocorrelation start with 5 random starts, 2 threads")
    p.add_argument("--stopping", default=None, metavar="SEEDS",
                   help="compare the stopping rules on these seeds (comma-separated) "
                        "with the headline's protocol at --size")
    p.add_argument("--rules", default="auto,gain,tol", type=lambda v: v.split(","),
                   help="with --stopping, the rules to run (comma-separated subset of "
                        "auto,gain,tol; the ratios need all three)")
    p.add_argument("--stopping-figure", default=None, metavar="FILE",
                   help="with --stopping: plot each seed's error against time to FILE")
    args = p.parse_args(argv)
    args.variants = args.variants.split(",")
    if args.stopping:
        args.stopping = [int(s) for s in args.stopping.split(",")]
        args.snr, args.rotations, args.n_jobs = 2.0, 16, max(args.n_jobs, 2)
        return stopping(args)
    if args.quick:
        args.size, args.rotations = 400, 8
    if args.headline:
        args.size, args.snr, args.rotations, args.seed, args.n_jobs = 10000, 2.0, 16, 2021, 2
    run(args)


if __name__ == "__main__":
    main()
