"""Defocus groups: the cost per iteration and the error against the number of groups.

``--micrographs`` micrographs of ``--size`` pixels hold a
:func:`~mtdlearn.make_particle` target (box ``--image-size``, particle
diameter ``--diameter``) at density 0.08, each convolved with its own CTF
(300 kV, Cs 2.7 mm, amplitude contrast 0.1, ``--pixel-size`` A/px, defocus
evenly from 0.8 to 2.5 um in a shuffled order), in colored noise with 4x the
power at low frequencies, at SNR ``--snr``.  Each micrograph's noise
spectrum is estimated from it (:func:`~mtdlearn.imaging.noise.estimate_noise_psd`).
For each number of groups G of ``--groups``,
:func:`~mtdlearn.imaging.groups.defocus_groups` gives every micrograph its
group's CTF and mean spectrum (G = the number of micrographs: each its own,
as ``noise="colored"`` does), and:

* ``s/iter``: ``--iterations`` plain EM iterations (``acceleration=None``,
  float64) from the truth, their wall time per iteration (setting up
  included);
* with ``--fit``: the default fit (``tol=--tol``), its error after rotation
  and translation against the CTF-free truth, its E-steps and time.

Usage::

    python benchmarks/bench_defocus_groups.py --groups 16 8 4 2 1
    python benchmarks/bench_defocus_groups.py --groups 16 4 --fit
"""

import argparse
import time
import warnings

import numpy as np

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_particle
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.groups import defocus_groups
from mtdlearn.imaging.noise import estimate_noise_psd, make_noise_psd
from mtdlearn.initializers import FixedInitializer
from mtdlearn.metrics import relative_error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micrographs", type=int, default=16)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--image-size", type=int, default=13)
    parser.add_argument("--diameter", type=float, default=8.8)
    parser.add_argument("--pixel-size", type=float, default=4.0)
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--groups", type=int, nargs="+", default=[16, 8, 4, 2, 1])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()

    L, M = args.image_size, args.micrographs
    basis = FourierBesselBasis(L, radius=args.diameter / 2.0)
    coef = make_particle(basis, diameter=args.diameter, random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    ctfs = [CTF(float(d), pixel_size=args.pixel_size)
            for d in rng.permutation(np.linspace(8000.0, 25000.0, M))]
    X, truth = make_measurement(coef, basis, args.size, density=0.08, snr=args.snr,
                                n_measurements=M, random_state=args.seed, ctf=ctfs,
                                noise_psd=make_noise_psd(4.0))
    psds = [estimate_noise_psd(x) for x in X]
    print(f"# {M} x {args.size}^2, L={L}, diameter {args.diameter}, {args.pixel_size} A/px, "
          f"SNR {args.snr}, {len(truth.positions)} copies, seed {args.seed}, "
          f"{args.jobs} thread(s)")
    print(f"{'groups':>6} {'s/iter':>7} {'error':>7} {'e_steps':>7} {'fit_s':>7} conv")
    for G in args.groups:
        _, group_ctfs, group_psds = defocus_groups(ctfs, G, psds)
        kw = dict(basis=basis, ctf=group_ctfs, noise=group_psds, n_jobs=args.jobs,
                  random_state=args.seed)
        start = FixedInitializer(coef, noise_variance=truth.noise_variance)
        est = ApproxEMEstimator(L, initializer=start, max_iter=args.iterations, tol=0.0,
                                acceleration=None, dtype=np.float64, **kw)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X)
        per_iter = (time.perf_counter() - t0) / args.iterations
        row = f"{G:>6} {per_iter:>7.2f}"
        if args.fit:
            est = ApproxEMEstimator(L, tol=args.tol, max_iter=300, **kw)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X)
            err = relative_error(coef, est.coef_, basis, align="rotation+translation")
            row += (f" {err:>7.4f} {est.n_e_steps_:>7} {time.perf_counter() - t0:>7.1f} "
                    f"{est.converged_}")
        print(row, flush=True)


if __name__ == "__main__":
    main()
