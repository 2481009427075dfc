"""
Quick start: recover an image from a noisy measurement
======================================================

Simulate a measurement at the paper's settings (L = 5, 10 Fourier-Bessel
coefficients, density 0.04, SNR 5), fit autocorrelation analysis and the
approximate EM started from it, and look at the result: the measurement with
the EM's detections, the true image beside both estimates, the convergence
curve and the estimated shift distribution.

Runs in seconds at N = 1000; ``MTDLEARN_FULL=1`` uses N = 4000.
"""

import os

import matplotlib.pyplot as plt

from mtdlearn import (ApproxEMEstimator, AutocorrelationEstimator, AutocorrelationInitializer,
                      FourierBesselBasis, make_measurement, make_target, relative_error)
from mtdlearn.plotting import (plot_convergence, plot_images, plot_measurement,
                               plot_shift_probabilities)

N = 4000 if os.environ.get("MTDLEARN_FULL") == "1" else 1000

basis = FourierBesselBasis(5, n_coefficients=10)
coef = make_target(basis, random_state=0)
X, truth = make_measurement(coef, basis, N, density=0.04, snr=5, random_state=0)
print(f"{truth.n_copies} copies in a {N} x {N} measurement, noise variance "
      f"{truth.noise_variance:.3f}")

# %%
# Autocorrelation analysis estimates the density, the image and the noise
# variance from the first three autocorrelations of the measurement.
ac = AutocorrelationEstimator(5, basis=basis, n_init=3, random_state=0).fit(X)
print(f"autocorrelation analysis: error {relative_error(coef, ac.coef_, basis):.4f}, "
      f"density {ac.density_:.4f}")

# %%
# The approximate EM, initialized by autocorrelation analysis (the paper's
# Fig. 2 protocol), estimates the noise variance too.
em = ApproxEMEstimator(5, basis=basis, rotations=16,
                       initializer=AutocorrelationInitializer(n_init=3),
                       tol=1e-5, random_state=0, n_jobs=-1).fit(X)
print(f"approximate EM: error {relative_error(coef, em.coef_, basis):.4f}, density "
      f"{em.density_:.4f}, noise variance {em.noise_variance_:.3f}, {em.n_iter_} iterations")

# %%
# Both estimators fit the same generative model, so they can be compared by
# the log-likelihood per patch (eq. 5) of a fresh measurement of the same target.
X_new, _ = make_measurement(coef, basis, N, density=0.04, snr=5, random_state=1)
print(f"held-out log-likelihood per patch: autocorrelation {ac.score(X_new):.4f}, "
      f"EM {em.score(X_new):.4f}")

# %%
# The estimates side by side (each rotated to its best alignment with the
# truth), and the measurement with what the EM detected in its top-left corner.
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), layout="constrained")
plot_images(coef, [ac.coef_, em.coef_], basis, labels=["autocorrelation", "approximate EM"],
            axes=axes)

fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
det = em.predict(X[:150, :150])
plot_measurement(X, detections=det, truth=truth, image_size=5, ax=axes[0], max_side=150)
plot_convergence(em, ax=axes[1])
plot_shift_probabilities(em.shift_probabilities_, ax=axes[2])
os.makedirs("out", exist_ok=True)
fig.savefig(os.path.join("out", "quick_start.png"), dpi=110)
plt.show()
