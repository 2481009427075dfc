"""Recovery of particle-like images: the default fit against the fit started from the truth.

For each image size L, SNR and seed, a :func:`~mtdlearn.make_particle` target
(compact Gaussian atoms in a ball of 0.65 L, in the default basis
``FourierBesselBasis(L)``) is simulated at density 0.08 with at least
``--copies`` copies (the measurement side follows), and fitted twice:

* ``default``: ``ApproxEMEstimator(L, random_state=seed, n_jobs=--jobs)``,
  plus the JSON parameters of ``--kw`` (a candidate setting);
* ``truth``: the same estimator started from the true coefficients, shift
  distribution and noise variance (``FixedInitializer``): the optimum the
  data support near the truth.

Each row reports the rotation-aligned error of eq. (19), the image error
after rotation *and* translation (``relative_error(...,
align="rotation+translation")``: a particle smaller than its box is
identified only up to a translation), the mean log-likelihood per patch
(``score``) and per pixel, the time, the iterations, and whether the fit
converged or ended degenerate (``degenerate_``).  The summary compares the
default with the truth start per case: the issue's targets are an error
after rotation and translation at most 1.25x the truth start's, and a mean
log-likelihood within 1e-3 per pixel of it.

Usage::

    python benchmarks/bench_particles.py --image-size 11 --snr 3 1 --seeds 0 1 2 3 4
    python benchmarks/bench_particles.py --image-size 21 --snr 3 --seeds 0 --jobs 2
    python benchmarks/bench_particles.py --image-size 11 --kw '{"n_init": 4}'
"""

import argparse
import json
import time
import warnings

import numpy as np

from mtdlearn import (ApproxEMEstimator, FixedInitializer, FourierBesselBasis, make_measurement,
                      make_particle, relative_error)
from mtdlearn.imaging.shifts import density_to_shift_probabilities

DENSITY = 0.08


def simulate(L, snr, seed, copies):
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=seed)
    size = int(np.ceil(np.sqrt(copies * L * L / DENSITY)))
    X, truth = make_measurement(coef, basis, size, density=DENSITY, snr=snr,
                                random_state=seed)
    return basis, coef, X, truth


def fit(L, X, seed, jobs, kw, start=None):
    est = ApproxEMEstimator(L, random_state=seed, n_jobs=jobs, initializer=start, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X)
    elapsed = time.perf_counter() - t0
    notes = sorted({type(w.message).__name__ for w in caught})
    return est, elapsed, notes


def row(name, est, elapsed, notes, basis, coef, X, L):
    e19 = relative_error(coef, est.coef_, basis)
    etr = relative_error(coef, est.coef_, basis, align="rotation+translation")
    score = est.score(X)
    status = ("degenerate" if getattr(est, "degenerate_", None) else
              "converged" if est.converged_ else "not converged")
    print(f"    {name:<8} eq.19 {e19:7.4f}  rot+trans {etr:7.4f}  loglik/patch {score:12.4f}"
          f"  /pixel {score / L**2:10.6f}  {elapsed:7.1f} s  {est.n_iter_:3d} it  "
          f"density {est.density_:.4f}  K {len(est.angles_)} (test "
          f"{getattr(est, 'rotation_concentration_', float('nan')):.3f})  {status} "
          f"{' '.join(notes)}", flush=True)
    return {"e19": e19, "etr": etr, "score": score, "time": elapsed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, nargs="+", default=[11])
    ap.add_argument("--snr", type=float, nargs="+", default=[3.0, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--copies", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kw", default="{}", help="JSON parameters of the default fit")
    args = ap.parse_args()
    kw = json.loads(args.kw)
    summary = []
    for L in args.image_size:
        for snr in args.snr:
            for seed in args.seeds:
                basis, coef, X, truth = simulate(L, snr, seed, args.copies)
                print(f"L = {L}, SNR {snr:g}, seed {seed}: N = {X.shape[0]}, "
                      f"{truth.n_copies} copies, kw {kw}", flush=True)
                start = FixedInitializer(coef, density_to_shift_probabilities(truth.density, L),
                                         truth.noise_variance)
                ref = row("truth", *fit(L, X, seed, args.jobs, kw, start), basis, coef, X, L)
                new = row("default", *fit(L, X, seed, args.jobs, kw), basis, coef, X, L)
                summary.append((L, snr, seed, new["etr"] / ref["etr"],
                                (new["score"] - ref["score"]) / L**2, new["time"]))
    print("\n  L   SNR  seed  rot+trans error / truth start's   loglik/pixel - truth's   time s")
    for L, snr, seed, ratio, dscore, t in summary:
        print(f"{L:3d} {snr:5g} {seed:5d}  {ratio:30.3f}  {dscore:22.2e}  {t:7.1f}")


if __name__ == "__main__":
    main()
