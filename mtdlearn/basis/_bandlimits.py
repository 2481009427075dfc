"""The nested band-limited sub-bases of a Fourier-Bessel basis.

:class:`~mtdlearn.ApproxEMEstimator` with ``select_bandlimit=True`` chooses
among them the band limit that the data support (Akaike's information
criterion).  This module builds the sequence and maps coefficients between a
basis and its sub-bases (exactly: the functions are the same, so an image
keeps its pixels).
"""

import numpy as np

from .fourier_bessel import FourierBesselBasis

#: The smallest basis of the sequence has at least this many functions ...
MIN_FUNCTIONS = 10
#: ... and each next one a band limit this much larger (about twice as many functions).
RATIO = np.sqrt(2.0)


def check_nested_basis(basis):
    """Raise ``ValueError`` unless ``basis`` has nested band-limited sub-bases."""
    if not isinstance(basis, FourierBesselBasis):
        raise ValueError("select_bandlimit needs a FourierBesselBasis (nested band "
                         f"limits), got {type(basis).__name__}")


def _keys(basis):
    """``(nu, q, kind)`` of each function: what identifies it across bases."""
    return list(zip(basis.frequencies.tolist(), basis.radial_indices.tolist(),
                    basis.kinds.tolist()))


def nested_bases(basis, min_functions=MIN_FUNCTIONS, ratio=RATIO):
    """The sub-bases of ``basis`` by band limit, smallest first, then ``basis``.

    Stage ``k`` holds the functions of ``basis`` with ``lambda <=
    lambda_max / ratio**k`` (``lambda_max`` the largest root of ``basis``),
    as a :class:`~mtdlearn.FourierBesselBasis` of the same image size and
    radius (built with that band limit, or, for a basis chosen by
    ``n_coefficients``, with that many coefficients), down to
    ``min_functions`` functions.  A stage that would not be a subset of
    ``basis`` ends the sequence.
    """
    keys = set(_keys(basis))
    radius = basis.get_params()["radius"]
    top = float(np.max(basis.roots))
    stages = [basis]
    k = 1
    while True:
        lam = top / ratio ** k
        m = int(np.sum(basis.roots <= lam))
        if m < min_functions:
            break
        stage = None
        for options in ({"bandlimit": lam}, {"n_coefficients": m}):
            try:
                cand = FourierBesselBasis(basis.image_size, radius=radius, **options)
            except ValueError:
                continue
            if cand.n_functions == m and set(_keys(cand)) <= keys:
                stage = cand
                break
        if stage is None:
            break
        if stage.n_functions < stages[0].n_functions:
            stages.insert(0, stage)
        k += 1
    return stages


def _index(sub, basis):
    index = {key: i for i, key in enumerate(_keys(basis))}
    return np.array([index[key] for key in _keys(sub)], dtype=np.intp)


def restrict_coef(coef, basis, sub):
    """The coefficients ``coef`` of ``basis`` on the functions of its sub-basis ``sub``."""
    coef = np.asarray(coef, dtype=np.float64)
    if sub is basis:
        return coef.copy()
    return coef[_index(sub, basis)]


def embed_coef(coef, sub, basis):
    """Coefficients of the sub-basis ``sub`` as those of ``basis``, zero on the
    other functions: the same image, exactly."""
    if sub is basis:
        return np.array(coef, dtype=np.float64)
    out = np.zeros(basis.n_functions)
    out[_index(sub, basis)] = coef
    return out
