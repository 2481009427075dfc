"""
A defocus series
================

A microscope records each micrograph through its own contrast transfer
function (CTF), set by its defocus, and in colored noise.  The CTF inverts
the contrast of some frequency bands and removes others at its zeros, so a
white-noise fit recovers the image as the micrographs show it, not the
molecule.  Given each micrograph's CTF (``ctf=``) and told to whiten the
noise (``noise="colored"``), the EM models a copy in micrograph ``m`` as
``W_m CTF_m F`` and solves for the CTF-free image ``F`` from all micrographs
at once: a defocus series fills each other's zeros.

Here four micrographs at 0.8 to 2.0 um (300 kV, 3 A/px) hold copies of a
:func:`~mtdlearn.make_particle` target 6 pixels (18 A) across, in an 11-pixel
box that leaves room for the CTF's spread; the noise has 4x the power at
low frequencies as at high ones.  The cheap correction users apply today,
phase flipping each micrograph before a white-noise fit
(:func:`~mtdlearn.imaging.ctf.phase_flip`), is the baseline: it corrects the
CTF's sign, not its amplitude or its zeros.  (With ``particle_diameter=9``
the white-noise fit of the flipped micrographs ends degenerate, and says so;
it is shown with the box's whole disk.)
"""

import copy
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement, make_particle,
                      relative_error)
from mtdlearn.em.residual import residual_noise_psds
from mtdlearn.imaging.ctf import CTF, phase_flip
from mtdlearn.imaging.noise import estimate_noise_psd, make_noise_psd

L = 11
basis = FourierBesselBasis(L)
coef = make_particle(basis, diameter=6.0, random_state=1)
ctfs = [CTF(float(df), pixel_size=3.0) for df in (8000, 12000, 16000, 20000)]
psd = make_noise_psd(4.0)
X, truth = make_measurement(coef, basis, 330, density=0.08, snr=20, n_measurements=4,
                            random_state=1, ctf=ctfs, noise_psd=psd)
print(f"{truth.n_copies} copies in {len(X)} micrographs of {X.shape[1]}^2, SNR 20")

fits = {}
flipped = np.stack([phase_flip(M, c) for M, c in zip(X, ctfs)])
for name, data, kw in (("CTF-aware", X, dict(ctf=ctfs, noise="colored", particle_diameter=9)),
                       ("phase-flipped", flipped, {})):
    em = ApproxEMEstimator(L, random_state=0, n_jobs=-1, **kw)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        em.fit(data)
    # the truth in the fit's basis (the CTF-aware fit's is a disk of diameter 9)
    error = relative_error(em.basis_.expand(basis.evaluate(coef)), em.coef_, em.basis_,
                           align="rotation+translation")
    print(f"{name}: {em.n_iter_} iterations in {time.perf_counter() - t0:.1f} s, error "
          f"after rotation and translation {error:.3f}")
    fits[name] = (em, error)

# %%
# The spectrum estimated from a micrograph holds the copies' own power at low
# frequencies.  :func:`~mtdlearn.em.residual.residual_noise_psds` estimates
# it again from what the fitted copies leave (RELION's residual spectra),
# and the fit continues from its estimate, whitened by them.
em = fits["CTF-aware"][0]
psds = residual_noise_psds(em, X)
refit = copy.deepcopy(em).set_params(noise=psds, warm_start=True)  # continues from em
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    refit.fit(X)
error = relative_error(refit.basis_.expand(basis.evaluate(coef)), refit.coef_, refit.basis_,
                       align="rotation+translation")
print(f"residual spectra: {refit.n_iter_} more iterations, error {error:.3f}")
fits["residual spectra"] = (refit, error)

# %%
# One micrograph, the four CTFs along a radius, the noise spectrum of the
# first micrograph as the fit estimated it from the micrograph and from its
# residual, against the one simulated, and the images: the truth, the
# CTF-aware estimate, the phase-flipped baseline, and the CTF-aware fit
# continued with the residual's spectra.  The copies are visible at this
# SNR, and their own power adds to the micrograph's spectrum below 0.2
# cycles/pixel (the estimate is robust to copies in a minority of its
# tiles, not to copies in almost every tile): the whitening then damps the
# image's low frequencies in data and model alike.  At 0.8 um the residual
# removes most of that excess (55 of the 72 copies are picked with a
# posterior of at least 0.5); at 1.6 and 2.0 um, where the CTF spreads a
# copy beyond the box, no pick is that sure and the spectrum stays the
# micrograph's.
fig = plt.figure(figsize=(10, 6), layout="constrained")
top = fig.subfigures(2, 1)
ax = top[0].subplots(1, 3)
ax[0].imshow(X[0][:160, :160], cmap="gray")
ax[0].set_title("micrograph at 0.8 um (part)")
ax[0].set_axis_off()
k = np.linspace(0, 0.5, 400)
for c in ctfs:
    ax[1].plot(k, c.evaluate_frequencies(np.zeros_like(k), k / c.pixel_size),
               label=f"{c.defocus_u / 1e4:.1f} um")
ax[1].axhline(0, color="k", lw=0.5)
ax[1].set_xlabel("frequency (cycles/pixel)")
ax[1].set_title("CTFs")
ax[1].legend(fontsize=7)
estimate = estimate_noise_psd(X[0])
scale = truth.noise_variance
ax[2].errorbar(estimate.frequencies, estimate.values / scale, estimate.errors / scale,
               fmt=".", ms=3, label="from the micrograph")
ax[2].errorbar(psds[0].frequencies, psds[0].values / scale, psds[0].errors / scale,
               fmt=".", ms=3, label="from the residual")
ax[2].plot(k, psd(k), label="simulated")
ax[2].set_xlabel("frequency (cycles/pixel)")
ax[2].set_title("noise spectrum / sigma^2")
ax[2].legend(fontsize=7)
bottom = top[1].subplots(1, 4)
bottom[0].imshow(basis.evaluate(coef), cmap="gray")
bottom[0].set_title("particle")
for axis, name in zip(bottom[1:], fits):
    em, error = fits[name]
    axis.imshow(em.image_, cmap="gray")
    axis.set_title(f"{name}: error {error:.2f}")
for axis in bottom:
    axis.set_axis_off()
plt.show()
