"""Record the wave-1 regression fixture (run once, before the restructuring).

``python tests/data/make_regression.py`` writes ``wave1_regression.npz`` beside
this file: for a few seeds, the fitted parameters, log-likelihood histories,
``predict`` output and measured moments of both estimators at small sizes.
``tests/test_regression.py`` pins the package to these values (1e-12; the
autocorrelation fit's outputs to where its optimizer stops).
The cases are listed in ``CASES`` and shared with the test.

``python tests/data/make_regression.py --case I`` re-records case ``I`` only,
keeping the others' arrays: done for case 2's ``em_*`` and ``ac_*`` arrays (its
moments were then put back from the wave-1 record) (the EM started from the autocorrelation
fit) when that fit's L-BFGS-B memory went from 10 to 50 correction pairs
(``moment_fit._LBFGS_MEMORY``), see ``tests/test_regression.py``.
"""

import argparse
from pathlib import Path

import numpy as np

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, AutocorrelationInitializer,
                      FourierBesselBasis, make_measurement, make_target)

try:  # the moments' module after the restructuring
    from mtdlearn.autocorrelation.moments import measurement_autocorrelations
except ImportError:  # pragma: no cover - the layout this fixture was recorded with
    from mtdlearn.autocorrelation.estimator import measurement_autocorrelations

HERE = Path(__file__).parent
FIXTURE = HERE / "wave1_regression.npz"

#: (seed, measurement size, SNR, K, noise variance fixed?, initializer, dtype)
CASES = [
    (0, 150, 10.0, 4, False, "random", "float64"),
    (1, 200, 5.0, 8, True, "random", "float64"),
    (2, 200, 5.0, 8, False, "autocorrelation", "float64"),
    (3, 150, 20.0, 4, False, "random", "float32"),
]


def data(seed, size, snr):
    basis = FourierBesselBasis(5, n_coefficients=10)
    coef = make_target(basis, random_state=seed)
    X, truth = make_measurement(coef, basis, size, snr=snr, random_state=seed)
    return basis, X, truth


def run_case(seed, size, snr, K, fixed, init, dtype):
    basis, X, truth = data(seed, size, snr)
    out = {}
    em = ApproxEMEstimator(
        5, basis=basis, rotations=K, max_iter=30, tol=1e-10, random_state=seed,
        noise_variance=truth.noise_variance if fixed else None, dtype=np.dtype(dtype),
        acceleration=None, refinement=None,  # the plain algorithm (wave-2 defaults differ)
        initializer=AutocorrelationInitializer(n_init=2) if init == "autocorrelation" else None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em.fit(X)
    out["em_coef"] = em.coef_
    out["em_rho"] = em.shift_probabilities_
    out["em_sigma2"] = np.float64(em.noise_variance_)
    out["em_history"] = np.asarray(em.log_likelihood_history_)
    det = em.predict(X)
    for name in det.dtype.names:
        out[f"em_predict_{name}"] = det[name]
    out["em_score_samples"] = em.score_samples(X)
    ac = AutocorrelationEstimator(5, basis=basis, n_init=2, random_state=seed).fit(X)
    out["ac_coef"] = ac.coef_
    out["ac_density"] = np.float64(ac.density_)
    out["ac_sigma2"] = np.float64(ac.noise_variance_)
    out["ac_cost"] = np.float64(ac.cost_)
    a1, a2, a3 = measurement_autocorrelations(X, 5)
    out["a1"], out["a2"], out["a3"] = np.float64(a1), a2, a3
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=int, default=None,
                    help="re-record this case only, keeping the others' arrays")
    args = ap.parse_args()
    arrays = {}
    if args.case is not None:
        if not 0 <= args.case < len(CASES):
            raise SystemExit(f"--case must be in [0, {len(CASES)}), got {args.case}")
        with np.load(FIXTURE) as old:
            arrays = {k: old[k] for k in old.files if not k.startswith(f"case{args.case}_")}
    for i, case in enumerate(CASES):
        if args.case is None or i == args.case:
            for key, value in run_case(*case).items():
                arrays[f"case{i}_{key}"] = value
    np.savez(FIXTURE, **arrays)
    print(f"wrote {FIXTURE} ({len(arrays)} arrays)")


if __name__ == "__main__":
    main()
