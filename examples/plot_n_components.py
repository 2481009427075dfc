"""
How many kinds of particle?
===========================

A sample is rarely one molecule: here a complex (a blob of Gaussian atoms
about 6 pixels across) and a free subunit (3.5 pixels), 60 % and 40 % of
the copies, both :func:`~mtdlearn.make_particle` targets in a 9-pixel box.
One image fitted to such data is a blend of the two.
``ApproxEMEstimator(n_components=C)`` fits ``C`` images and their
abundances, as scikit-learn's ``GaussianMixture`` fits ``C`` Gaussians, and
``bic(X)`` compares the fits: the lowest BIC chooses the number of kinds.
``predict`` then says which kind each pick is.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_particle,
                      relative_error)

L = 9
basis = FourierBesselBasis(L)
kinds = np.stack([make_particle(basis, random_state=1),
                  make_particle(basis, diameter=3.5, random_state=2)])
X, truth = make_measurement(kinds, basis, 420, density=0.08, snr=10, weights=[0.6, 0.4],
                            random_state=0)
counts = np.bincount(truth.component)
print(f"{truth.n_copies} copies ({counts[0]} complexes, {counts[1]} subunits), SNR 10")

fits = {}
for C in (1, 2, 3):
    em = ApproxEMEstimator(L, n_components=C, random_state=0, n_jobs=-1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(X)
    rows = em.coef_ if C > 1 else em.coef_[None]
    # each fitted kind against the nearest true kind, after rotation and translation
    errors = np.array([[relative_error(k, r, basis, align="rotation+translation")
                        for k in kinds] for r in rows])
    fits[C] = (em, em.bic(X), errors)
    print(f"C = {C}: BIC {fits[C][1]:.1f}, abundances {np.round(em.weights_, 3)}, "
          f"error against the nearest kind {np.round(errors.min(axis=1), 3)} "
          f"({time.perf_counter() - t0:.1f} s)")
best = min(fits, key=lambda C: fits[C][1])
print(f"chosen: {best} kinds")

# %%
# The BIC against the number of kinds, the truth, and each fit's images
# (shown in the order of their abundance).
fig = plt.figure(figsize=(10, 5.5), layout="constrained")
grid = fig.add_gridspec(3, 5, width_ratios=[2.2, 1, 1, 1, 0.1])
ax = fig.add_subplot(grid[:, 0])
ax.plot(list(fits), [fits[C][1] - fits[best][1] for C in fits], "o-")
ax.set_xticks(list(fits))
ax.set_xlabel("n_components")
ax.set_ylabel("BIC - lowest BIC")
ax.set_title(f"BIC chooses {best}")
vmax = np.abs(basis.evaluate(kinds)).max()
for j, (title, images) in enumerate([("truth", basis.evaluate(kinds))] + [
        (f"C = {C}", basis.evaluate(fits[C][0].coef_).reshape(-1, L, L)) for C in (1, 2)]):
    weights = (truth.weights if j == 0 else fits[(1, 2)[j - 1]][0].weights_)
    order = np.argsort(weights)[::-1]
    for i in range(2):
        a = fig.add_subplot(grid[i, j + 1])
        a.set_axis_off()
        if i < len(order):
            k = order[i]
            im = a.imshow(images[k], cmap="gray", vmin=-vmax, vmax=vmax)
            a.set_title(f"{title}: {weights[k]:.2f}", fontsize=9)
fig.colorbar(im, cax=fig.add_subplot(grid[:2, 4]))
plt.show()

# %%
# Picks of the two-kind fit name their kind (``component``; in STAR files
# ``rlnClassNumber``, counted from 1).  Each true copy's most probable pick
# at its corner:
em = fits[2][0]
match = fits[2][2].argmin(axis=1)
det = em.predict(X)
kind = {tuple(p): c for p, c in zip(truth.positions, truth.component)}
best_pick = {}
for r, c, k, p in zip(det["row"], det["col"], det["component"], det["probability"]):
    if (r, c) in kind and p > best_pick.get((r, c), (0, -1.0))[1]:
        best_pick[(r, c)] = (match[k], p)
right = np.mean([kind[key] == k for key, (k, _) in best_pick.items()])
print(f"{len(best_pick)} of {truth.n_copies} copies picked at their corner, "
      f"{100 * right:.0f} % named with their kind")
