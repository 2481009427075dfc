"""
Model selection by held-out log-likelihood
==========================================

How many basis coefficients does the target need?  ``score`` is the mean
approximate log-likelihood per patch (eq. 5), so scikit-learn's
``GridSearchCV`` can choose ``basis__n_coefficients`` by cross-validation
over a stack of measurements (each measurement is one sample).

The true target here has 6 coefficients.  Runs in seconds; ``MTDLEARN_FULL=1``
uses larger measurements.
"""

import os

import matplotlib.pyplot as plt
from sklearn.model_selection import GridSearchCV, KFold

from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target

N = 1000 if os.environ.get("MTDLEARN_FULL") == "1" else 400
true_basis = FourierBesselBasis(5, n_coefficients=6)
coef = make_target(true_basis, random_state=3)
X, truth = make_measurement(coef, true_basis, N, snr=5, n_measurements=4, random_state=3)

em = ApproxEMEstimator(5, basis=FourierBesselBasis(5, n_coefficients=10), rotations=8,
                       noise_variance=truth.noise_variance, max_iter=100, tol=1e-5,
                       random_state=0)
grid = GridSearchCV(em, {"basis__n_coefficients": [1, 3, 6, 10]}, cv=KFold(2), n_jobs=-1)
grid.fit(X)
scores = grid.cv_results_["mean_test_score"]
counts = [FourierBesselBasis(5, n_coefficients=m).n_functions for m in [1, 3, 6, 10]]
for m, s in zip(counts, scores):
    print(f"{m:>2} coefficients: held-out log-likelihood per patch {s:.5f}")
print(f"chosen: {grid.best_params_}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.plot(counts, scores - scores.max(), "o-")
ax.axvline(6, color="k", ls=":", label="true number")
ax.set_xlabel("number of coefficients")
ax.set_ylabel("held-out log-likelihood per patch\n(relative to the best)")
ax.legend()
os.makedirs("out", exist_ok=True)
fig.savefig(os.path.join("out", "model_selection.png"), dpi=120)
plt.show()
