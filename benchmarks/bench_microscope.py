"""Micrographs as a microscope makes them: the CTF-aware fit against ignoring the CTF and phase flipping.

A :func:`~mtdlearn.make_particle` target (box ``--image-size``, default 21,
particle diameter 0.65 of it) is simulated in ``--micrographs`` micrographs
of ``--size`` pixels at density 0.08, each convolved with its own CTF
(300 kV, Cs 2.7 mm, amplitude contrast 0.1, 3 A/px, defocus evenly from
0.8 to 2.0 um), in colored noise whose low frequencies have 4x the power of
the high ones (:func:`~mtdlearn.imaging.noise.make_noise_psd`), at each SNR
of ``--snr`` (the CTF-free image's power over the noise's mean power per
pixel).  The fits of ``ApproxEMEstimator(--box, particle_diameter=...)``:

* ``aware``: ``ctf=`` the micrographs' CTFs, ``noise="colored"`` (each
  micrograph's spectrum estimated from itself, data and model whitened);
* ``ignored``: today's model, white noise and no CTF (before this issue);
* ``flipped``: the cheap baseline users apply today: each micrograph
  phase-flipped by its CTF, then the white-noise fit;
* ``aware_ac``: the ``aware`` fit started from autocorrelation analysis
  through the same CTFs and whitening
  (``initializer=AutocorrelationInitializer()``, which takes the EM's
  ``ctf`` and ``noise``) instead of the default white-noise phase;
* ``residual``: the ``aware`` fit, then each micrograph's spectrum
  re-estimated from what its fitted copies leave
  (:func:`~mtdlearn.em.residual.residual_noise_psds`) and the fit
  continued from its result with those spectra (``warm_start``); its time
  and E-steps include the ``aware`` fit's (run once when both are asked);
* ``noise_residual``: the same in one call, ``noise="residual"`` (the
  first fit under ``noise="auto"``).

Each row reports the image error after rotation and translation against
the CTF-free truth (in the fit's basis: ``floor`` is the error of the
truth's own expansion in it), the fit's time, its E-steps and the time per
E-step, and whether it converged.

Usage::

    python benchmarks/bench_microscope.py --snr 100 10 3 1 --methods aware residual ignored flipped
    python benchmarks/bench_microscope.py --size 512 --micrographs 2 --snr 10   # quick
"""

import argparse
import copy
import json
import time
import warnings

import numpy as np

from mtdlearn import (ApproxEMEstimator, AutocorrelationInitializer, FourierBesselBasis,
                      make_measurement, make_particle)
from mtdlearn.em.residual import residual_noise_psds
from mtdlearn.imaging.ctf import CTF, phase_flip
from mtdlearn.imaging.noise import make_noise_psd
from mtdlearn.metrics import relative_error

DENSITY = 0.08
PIXEL_SIZE = 3.0


def simulate(L, size, n_micrographs, snr, seed):
    basis = FourierBesselBasis(L)
    coef = make_particle(basis, random_state=seed)
    defocus = np.linspace(8000.0, 20000.0, n_micrographs)
    ctfs = [CTF(float(df), pixel_size=PIXEL_SIZE) for df in defocus]
    X, truth = make_measurement(coef, basis, size, density=DENSITY, snr=snr,
                                n_measurements=n_micrographs, random_state=seed, ctf=ctfs,
                                noise_psd=make_noise_psd(4.0))
    return basis, coef, ctfs, X, truth


def truth_in(basis, image):
    """The truth's pixels centred in ``basis``'s box, expanded in it."""
    B, L = basis.image_size, image.shape[0]
    box = np.zeros((B, B))
    o = (B - L) // 2
    box[o:o + L, o:o + L] = image
    coef = basis.expand(box)
    floor = np.linalg.norm(basis.evaluate(coef) - box) / np.linalg.norm(box)
    return coef, float(floor)


def fit(method, X, ctfs, box, diameter, seed, jobs, kw):
    params = dict(particle_diameter=diameter, random_state=seed, n_jobs=jobs, **kw)
    if method == "aware":
        est, data = ApproxEMEstimator(box, ctf=ctfs, noise="colored", **params), X
    elif method == "aware_ac":   # started from autocorrelation analysis through the CTFs
        est = ApproxEMEstimator(box, ctf=ctfs, noise="colored",
                                initializer=AutocorrelationInitializer(n_jobs=jobs), **params)
        data = X
    elif method == "noise_residual":   # the same in one call, under "auto" first
        est, data = ApproxEMEstimator(box, ctf=ctfs, noise="residual", **params), X
    elif method == "ignored":
        est, data = ApproxEMEstimator(box, **params), X
    elif method == "flipped":
        est = ApproxEMEstimator(box, **params)
        data = np.stack([phase_flip(M, c) for M, c in zip(X, ctfs)])
    else:
        raise ValueError(f"unknown method {method!r}")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(data)
    return est, time.perf_counter() - t0, [str(w.message)[:80] for w in caught]


def refit_residual(aware, X, elapsed):
    """The ``aware`` fit continued with the spectra of its residual; the times and
    E-steps add up."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a copy of the fitted estimator continues from its estimate (warm_start)
        est = copy.deepcopy(aware).set_params(noise=residual_noise_psds(aware, X),
                                              warm_start=True).fit(X)
    est.n_e_steps_ += aware.n_e_steps_
    return est, elapsed + time.perf_counter() - t0, [str(w.message)[:80] for w in caught]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=21)
    parser.add_argument("--box", type=int, default=None, help="the fit's box (default: L)")
    parser.add_argument("--diameter", type=float, default=None,
                        help="the fit's particle_diameter (default: the box's disk)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--micrographs", type=int, default=8)
    parser.add_argument("--snr", type=float, nargs="+", default=[100.0, 10.0, 3.0, 1.0])
    parser.add_argument("--methods", nargs="+", default=["aware", "ignored", "flipped"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--kw", type=json.loads, default={})
    parser.add_argument("--json", default=None, help="append rows to this JSON-lines file")
    args = parser.parse_args()
    L = args.image_size
    box = args.box or L
    print(f"# {args.micrographs} x {args.size}^2, L={L}, box {box}, diameter "
          f"{args.diameter}, seed {args.seed}, {args.jobs} thread(s), kw {args.kw}")
    print(f"{'snr':>6} {'method':>8} {'error':>7} {'floor':>6} {'time_s':>8} {'e_steps':>7} "
          f"{'s/e-step':>8} {'conv':>5}")
    for snr in args.snr:
        basis, coef, ctfs, X, truth = simulate(L, args.size, args.micrographs, snr, args.seed)
        image = basis.evaluate(coef)
        aware = None
        for method in args.methods:
            if method == "residual":
                if aware is None:
                    aware = fit("aware", X, ctfs, box, args.diameter, args.seed, args.jobs,
                                args.kw)
                est, elapsed, caught = refit_residual(aware[0], X, aware[1])
            else:
                est, elapsed, caught = fit(method, X, ctfs, box, args.diameter, args.seed,
                                           args.jobs, args.kw)
                if method == "aware":
                    aware = est, elapsed, caught
            ref, floor = truth_in(est.basis_, image)
            err = relative_error(ref, est.coef_, est.basis_, align="rotation+translation")
            per = elapsed / est.n_e_steps_
            print(f"{snr:6g} {method:>8} {err:7.4f} {floor:6.3f} {elapsed:8.1f} "
                  f"{est.n_e_steps_:7d} {per:8.2f} {str(est.converged_):>5}", flush=True)
            if caught:
                print("       warnings:", "; ".join(caught))
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(dict(
                        snr=snr, method=method, error=err, floor=floor, time=elapsed,
                        e_steps=est.n_e_steps_, converged=est.converged_, L=L, box=box,
                        diameter=args.diameter, size=args.size, micrographs=args.micrographs,
                        seed=args.seed, kw=args.kw, copies=len(truth.positions))) + "\n")


if __name__ == "__main__":
    main()
