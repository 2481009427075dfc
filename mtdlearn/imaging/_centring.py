"""Re-centring the estimate: fix the translation the data cannot see.

A particle smaller than its box is identified only up to a translation: a
copy of ``T_d F`` at position ``p`` is a copy of ``F`` at ``p + R_phi d``.
So the EM can drift sideways, and the parts that leave the basis's disk are
lost: from a random start, the default fit of a ``make_particle`` target at
L = 11 converged to a translated copy cut off by the disk, with 1.4-3.0
times the error (after rotation and translation) of the fit started from
the truth (``benchmarks/bench_particles.py``).

After each iteration (a SQUAREM cycle) :func:`recentred` moves the image by
whole pixels so that the centre of mass of its positive part is within half
a pixel of the centre pixel, as RELION's ``--center_classes`` does: the
basis is evaluated at the shifted pixel coordinates and expanded back.  The
estimator's ``_step`` then recomputes the E-step at the moved image (its
objective is another point, so that iteration's gain is not compared with
``tol``).  The shift distribution is kept.  Whole pixels, because the
shifts of the hypotheses are whole pixels: a copy of the moved image at one
shift is a copy of the image at another, so with ``rho`` uniform over the
copies' positions the likelihood of a compact image does not change (up to
the basis's re-expansion, and exactly so for the rotations by multiples of
90 degrees; measured within 6e-7 per pixel at L = 15, K = 4), where a
sub-pixel move would change which sub-pixel phase the templates have (by
2.7e-4 per pixel in the same test).

It acts only when it helps and loses nothing: when the centre is half a
pixel or more off in a row or column, and when the moved image keeps at least
:data:`MIN_ENERGY_KEPT` of its energy in the basis (an image that fills its
disk, like the paper's random-coefficient targets, would lose its edge;
measured over 40 seeds each: their positive part's centre is within 0.46
pixel of the centre at L = 5, 11 and 21, and a one-pixel move would keep
only 68-95 % of their energy, while ``make_particle`` images keep 100.0 %).
"""

import numpy as np

__all__ = []

#: Re-centre when the centre of mass is this far (pixels) from the centre
#: pixel, in a row or column: the move rounds to a whole pixel.  A
#: random-coefficient target's is within 0.46 (40 seeds at L = 5, 11, 21);
#: a drifted particle's is 1-3 pixels off.
MIN_OFFSET = 0.5
#: ... and when the moved image keeps at least this fraction of its energy.
#: Measured: a random-coefficient target moved by one pixel keeps 0.68-0.80
#: of it at L = 5 (paper's basis), 0.85-0.89 at L = 11 and 0.92-0.95 at
#: L = 21 (20 seeds each); a drifted EM estimate of a particle 1.000, an
#: autocorrelation fit of one (whose disk holds some texture) 0.988.
MIN_ENERGY_KEPT = 0.98


def centre_of_mass(basis, coef):
    """``(dy, dx)``: the centre of mass of the image's positive part, from the centre pixel."""
    return _centre_of_image(basis.evaluate(coef))


def _centre_of_image(image):
    L = image.shape[0]
    weights = np.maximum(image, 0.0)
    total = weights.sum()
    if not total > 0:
        return 0.0, 0.0
    offsets = np.arange(L) - L // 2
    return (float(weights.sum(axis=1) @ offsets / total),
            float(weights.sum(axis=0) @ offsets / total))


def recentred(basis, coef):
    """The coefficients of the image moved by whole pixels to its centre of mass, or ``None``.

    ``None`` when the image's centre of mass is within :data:`MIN_OFFSET` of
    the centre pixel in both rows and columns (it rounds to no move),
    when moving it would lose more than ``1 - MIN_ENERGY_KEPT`` of its
    energy in the basis, or when the basis cannot evaluate the image between
    pixels (``evaluate_points``).
    """
    if not hasattr(basis, "evaluate_points"):   # not in the basis protocol
        return None
    image = basis.evaluate(coef)
    cy, cx = _centre_of_image(image)
    if max(abs(cy), abs(cx)) <= MIN_OFFSET:
        return None
    dy, dx = float(np.round(cy)), float(np.round(cx))
    L = basis.image_size
    grid = np.arange(L, dtype=np.float64) - L // 2
    moved = basis.expand(basis.evaluate_points(coef, grid[None, :] + dx, grid[:, None] + dy))
    if np.sum(basis.evaluate(moved) ** 2) < MIN_ENERGY_KEPT * np.sum(image * image):
        return None
    return moved
