"""Several kinds of particle: one image against ``n_components``, and the choice of their number.

The issue's setting by default: ``--kinds`` random kinds (default two) of
the paper's basis (L = 5, 10 functions; ``make_target`` with seeds ``10 s +
i`` for seed ``s``), equal abundances (or ``--weights``), density 0.08, SNR 10, one ``--size``² measurement
(2000² holds about 12800 copies).  Or ``--particles``: two
:func:`~mtdlearn.make_particle` kinds at L = ``--image-size`` (default 11; a
complex of the default diameter and a subunit of ``4.5 L / 11`` pixels,
abundances 0.6 and 0.4, or ``--weights``; with ``--pair distinct``,
``--kinds`` unrelated particles of the default diameter at equal
abundances, the issue's L = 21 target).  ``--ctf-micrographs N`` puts the
particles in ``N`` micrographs of ``--size``² through CTFs at 0.8-2.0 µm in
colored noise, as ``bench_microscope.py`` does, and fits with the CTFs.

For each ``C`` of ``--components`` it fits ``ApproxEMEstimator(L,
n_components=C)`` (default settings otherwise) and reports each fitted
true kind's error against the fitted kind matched to it by the best
assignment (:func:`~mtdlearn.component_errors`; rotation-aligned, eq. 19;
after rotation and translation for particles; ``+e`` for a fitted kind left
over, with its error against its nearest true kind), the abundances, the fraction of
true copies whose best pick at their corner names their kind, BIC and AIC,
the iterations and the time.  ``--shift-test`` adds, for each fit with
``C > 1``, what a shift distribution per kind would gain over the shared
one at the fit (:func:`shift_prior_test`), against its parameter count.

Usage::

    python benchmarks/bench_components.py --size 2000 --components 1 2 3
    python benchmarks/bench_components.py --particles --size 500 --components 1 2 3
    python benchmarks/bench_components.py --size 4000 --kinds 3 --components 3 --reference --shift-test
    python benchmarks/bench_components.py --particles --image-size 15 --size 600 --ctf-micrographs 4 --components 2
"""

import argparse
import time
import warnings

import numpy as np

from scipy import stats as sps

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, component_errors, make_measurement,
                      make_particle, make_target, relative_error)
from mtdlearn.data.patches import PatchData
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.noise import make_noise_psd
from mtdlearn.likelihood.patch_model import build_patch_model
from mtdlearn.likelihood.statistics import estep_statistics


def simulate(args, seed):
    if args.particles:
        L = args.image_size
        basis = FourierBesselBasis(L)
        if args.pair == "subunit":
            kinds = np.stack([make_particle(basis, random_state=10 * seed + 1),
                              make_particle(basis, diameter=4.5 * L / 11,
                                            random_state=10 * seed + 2)])
            default = [0.6, 0.4]
        else:
            kinds = np.stack([make_particle(basis, random_state=10 * seed + 1 + i)
                              for i in range(args.kinds)])
            default = np.full(args.kinds, 1.0 / args.kinds)
        weights = default if args.weights is None else args.weights
        align = "rotation+translation"
    else:
        basis = FourierBesselBasis(5, n_coefficients=10)
        kinds = np.stack([make_target(basis, random_state=10 * seed + i)
                          for i in range(args.kinds)])
        weights = (np.full(args.kinds, 1.0 / args.kinds) if args.weights is None
                   else np.asarray(args.weights))
        align = "rotation"
    if args.ctf_micrographs:   # a defocus series in colored noise, as bench_microscope's
        ctfs = [CTF(float(df), pixel_size=3.0)
                for df in np.linspace(8000.0, 20000.0, args.ctf_micrographs)]
        X, truth = make_measurement(kinds, basis, args.size, density=0.08, snr=args.snr,
                                    weights=weights, n_measurements=args.ctf_micrographs,
                                    random_state=seed, ctf=ctfs, noise_psd=make_noise_psd(4.0))
        return basis, kinds, X, truth, align, dict(ctf=ctfs, noise="colored")
    X, truth = make_measurement(kinds, basis, args.size, density=0.08, snr=args.snr,
                                weights=weights, random_state=seed)
    return basis, kinds, X, truth, align, {}


def classified(em, X, truth, match):
    """Fraction of true copies whose most probable pick at their corner names their kind."""
    det = em.predict(X)
    if "component" not in det.dtype.names:
        return float("nan")
    kind = {(m, *p): c for m, p, c in zip(truth.measurement, map(tuple, truth.positions),
                                          truth.component)}
    best = {}
    for m, r, c, k, prob in zip(det["measurement"], det["row"], det["col"], det["component"],
                                det["probability"]):
        if (m, r, c) in kind and prob > best.get((m, r, c), (0, -1.0))[1]:
            best[(m, r, c)] = (match[k], prob)
    return float(np.mean([kind[key] == k for key, (k, _) in best.items()])) if best else 0.0


def shift_prior_test(em, X):
    """Would a shift distribution per kind fit better than the shared one?

    At the fitted parameters, the E-step's posterior mass of kind ``c`` at
    non-empty shift ``l`` is ``m[c, l]`` (summed over rotations).  One
    M-step with a free ``P(c, l)`` instead of the shared ``w_c rho_l`` gains
    ``G = sum m[c, l] log(m[c, l] n / (m[c, .] m[., l]))`` in the expected
    complete-data log-likelihood (the posterior masses' mutual information
    between kind and shift, times their total ``n``; EM's step gains at
    least that much in the log-likelihood).  Under the shared prior ``2 G``
    is about chi-square with ``(C - 1)(S - 1)`` degrees of freedom (the
    G-test of independence), and BIC charges ``(C - 1)(S - 1) log(N_d) / 2``.
    Returns ``(G, dof, p_value, BIC penalty)``.
    """
    L, C = em.image_size, em.n_components
    space = em._hypotheses()     # the fitted grid and kinds
    model = build_patch_model(em.coef_, em.shift_probabilities_, em.noise_variance_, space,
                              weights=em._weights())
    st = estep_statistics(PatchData([np.asarray(X)], L), model, n_jobs=1)
    m = space.per_rotation(np.asarray(st.weights, dtype=np.float64))
    m = m.reshape(C, len(em.angles_), -1).sum(axis=1)          # (C, S)
    n = m.sum()
    expected = m.sum(axis=1, keepdims=True) * m.sum(axis=0, keepdims=True) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        G = float(np.sum(np.where(m > 0, m * np.log(m / expected), 0.0)))
    dof = (C - 1) * (m.shape[1] - 1)
    return G, dof, float(sps.chi2.sf(2 * G, dof)), 0.5 * dof * np.log(st.n_patches)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--components", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n-init", type=int, default=1)
    ap.add_argument("--rotations", type=int, default=16)
    ap.add_argument("--kinds", type=int, default=2,
                    help="random kinds, or with --particles --pair distinct particles")
    ap.add_argument("--weights", type=float, nargs="+", default=None,
                    help="their abundances (default: equal)")
    ap.add_argument("--particles", action="store_true")
    ap.add_argument("--image-size", type=int, default=11, help="L of --particles")
    ap.add_argument("--pair", choices=["subunit", "distinct"], default="subunit",
                    help="--particles: a complex and its subunit (0.6 / 0.4), or "
                         "--kinds unrelated particles (equal abundances)")
    ap.add_argument("--reference", action="store_true",
                    help="also fit each kind alone, in a measurement of the same size "
                         "holding as many of its copies (the issue's yardstick)")
    ap.add_argument("--shift-test", action="store_true",
                    help="for C > 1, test a shift distribution per kind against the "
                         "shared one at the fit (shift_prior_test)")
    ap.add_argument("--ctf-micrographs", type=int, default=0,
                    help="--particles: this many micrographs of --size^2, each through "
                         "its CTF (0.8-2.0 um, 3 A/px) in 4x colored noise, fitted with "
                         "ctf= and noise='colored'")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    if args.ctf_micrographs and not args.particles:
        ap.error("--ctf-micrographs needs --particles")
    if args.ctf_micrographs and (args.reference or args.shift_test):
        ap.error("--ctf-micrographs does not support --reference or --shift-test yet")
    for seed in args.seeds:
        basis, kinds, X, truth, align, formation = simulate(args, seed)
        counts = np.bincount(truth.component, minlength=len(kinds))
        print(f"seed {seed}: {truth.n_copies} copies ({' + '.join(map(str, counts))}), "
              f"SNR {args.snr:g}, {' x '.join(map(str, X.shape))}, L = {basis.image_size}, "
              f"K = {args.rotations}", flush=True)
        if args.reference:
            for c, kind in enumerate(kinds):
                # the same noise variance as the mixture's: each kind at its own power
                Xc, tc = make_measurement(kind, basis, args.size,
                                          density=0.08 * counts[c] / counts.sum(),
                                          noise_variance=truth.noise_variance,
                                          random_state=seed)
                alone = ApproxEMEstimator(basis.image_size, basis=basis,
                                          rotations=args.rotations, random_state=seed,
                                          n_jobs=args.jobs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    alone.fit(Xc)
                print(f"  kind {c} alone ({tc.n_copies} copies): error "
                      f"{relative_error(kind, alone.coef_, basis, align=align):.4f}",
                      flush=True)
        print(f"  {'C':>2} {'errors (matched kinds)':<27} {'abundances':<22} {'picks':>6} "
              f"{'BIC':>12} {'AIC':>12} {'iter':>5} {'time s':>7}")
        for C in args.components:
            em = ApproxEMEstimator(basis.image_size, basis=basis, n_components=C,
                                   rotations=args.rotations, n_init=args.n_init,
                                   random_state=seed, n_jobs=args.jobs, **formation)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                em.fit(X)
            elapsed = time.perf_counter() - t0
            rows = em.coef_ if C > 1 else em.coef_[None]
            # estimated kinds matched to the true ones by the best assignment
            res = component_errors(kinds, rows, basis, align=align,
                                   true_weights=counts / counts.sum(), est_weights=em.weights_)
            match = res.pairwise.argmin(axis=0)      # each estimate's nearest true kind
            for i, j in enumerate(res.assignment):
                if j >= 0:
                    match[j] = i
            shown = ", ".join(f"{e:.4f}" for e in res.errors)
            if C == 1:   # one image against each kind
                shown = " / ".join(f"{e:.4f}" for e in res.pairwise[:, 0])
            if len(res.unmatched):
                shown += " +" + ",".join(f"{res.pairwise[:, j].min():.4f}"
                                         for j in res.unmatched)
            picks = classified(em, X, truth, match)
            notes = sorted({type(w.message).__name__ for w in caught})
            print(f"  {C:2d} {shown:<27} {str(np.round(em.weights_, 3).tolist()):<22} "
                  f"{picks:6.3f} {em.bic(X):12.1f} {em.aic(X):12.1f} {em.n_iter_:5d} "
                  f"{elapsed:7.1f} {' '.join(notes)}", flush=True)
            if args.shift_test and C > 1:
                G, dof, p, penalty = shift_prior_test(em, X)
                print(f"     shift prior per kind: gain {G:.1f} nats over {dof} more "
                      f"parameters (G-test p {p:.3g}; BIC's charge {penalty:.1f})",
                      flush=True)


if __name__ == "__main__":
    main()
