"""Noise spectra from what a fitted model's copies leave: RELION's residual spectra.

:func:`~mtdlearn.imaging.noise.estimate_noise_psd` reads the micrograph
itself, robust to copies in a minority of its tiles.  At density 0.08 the
copies sit in most tiles, and their power, concentrated below about one
over their size, adds to the lowest rings.  Two micrographs of 512**2 of a
:func:`~mtdlearn.make_particle` target at L = 21 (the first three rings'
power over the last ten's): in white noise at SNR 100 they read 58 and 105;
in the colored noise of ``make_noise_psd(4.0)`` (3.2 and 3.8 without the
copies) at SNR 3, 6.3 and 9.1 (:doc:`/results`, "Micrographs from a
microscope").  RELION re-estimates its noise
spectra from the residual of the fitted projections; :func:`residual_noise_psds`
does the same for a fitted :class:`~mtdlearn.ApproxEMEstimator`: the copies
its ``predict`` finds are rendered, formed through each micrograph's CTF,
and subtracted, and the spectrum is estimated from what is left.  Refit with
the spectra it returns (``noise=``) to whiten by them, or let
``ApproxEMEstimator(noise="residual")`` do both in one fit
(``fit_residual``).
"""

import warnings

import numpy as np
from scipy.spatial import cKDTree
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .._validation import check_real
from ..data.simulate import _add_formed_copies
from ..imaging.formation import MicroscopeFormation
from ..imaging.noise import estimate_noise_psd, is_white
from ..likelihood._inference import _patch_source
from ..likelihood.formed import check_ctf

__all__ = ["residual_noise_psds"]


def is_residual(noise):
    """Whether an estimator's ``noise`` is ``"residual"``.

    Parameters
    ----------
    noise : str, RadialPSD or sequence
        The estimator's ``noise``.

    Returns
    -------
    residual : bool
        ``True`` for ``"residual"``.

    Examples
    --------
    >>> from mtdlearn.em.residual import is_residual
    >>> is_residual("residual"), is_residual("auto")
    (True, False)
    """
    return isinstance(noise, str) and noise == "residual"


def _distinct(picks, image_size):
    """The picks of one micrograph, most probable first, without the repeats of a copy.

    A copy straddling several patches is reported by each of them
    (:meth:`~mtdlearn.ApproxEMEstimator.predict`); a pick whose corner lies
    within ``L / 2`` of a more probable one's is that copy again (two copies
    that close would overlap by more than half)."""
    picks = picks[np.argsort(-picks["probability"], kind="stable")]
    if len(picks) < 2:
        return picks
    corners = np.stack([picks["row"], picks["col"]], axis=1).astype(np.float64)
    tree, taken = cKDTree(corners), np.zeros(len(picks), dtype=bool)
    keep = np.zeros(len(picks), dtype=bool)
    for i in range(len(picks)):   # one Python step per copy: a few thousand per micrograph
        if not taken[i]:
            keep[i] = True
            taken[tree.query_ball_point(corners[i], image_size / 2.0)] = True
    return picks[keep]


def _fitted_copies(estimator, shape, picks, ctf, coef=None):
    """The fitted copies (of ``coef``, default ``coef_``) of one micrograph of
    ``shape``, formed through ``ctf``."""
    L = estimator.basis_.image_size
    padded = np.zeros((1, shape[0] + 2 * L, shape[1] + 2 * L))   # room for edge copies
    corners = np.stack([picks["row"], picks["col"]], axis=1).astype(np.int64) + L
    component = picks["component"] if "component" in picks.dtype.names else None
    coef = estimator.coef_ if coef is None else coef
    _add_formed_copies(padded, np.asarray(coef), estimator.basis_, corners,
                       picks["angle"], np.zeros(len(picks), dtype=np.int64),
                       None if ctf is None else [MicroscopeFormation(ctf, None)], component)
    return padded[0, L:L + shape[0], L:L + shape[1]]


def residual_noise_psds(estimator, X, *, noise="colored", min_probability=0.5, tile_size=64):
    """Each micrograph's noise spectrum, estimated from what the fitted copies leave.

    The copies :meth:`~mtdlearn.ApproxEMEstimator.predict` finds with a
    posterior probability of at least ``min_probability`` (each copy once),
    rendered from the fitted image(s) at their corners and angles and
    convolved with the micrograph's CTF (the estimator's ``ctf``), are
    subtracted from the micrograph, and
    :func:`~mtdlearn.imaging.noise.estimate_noise_psd` reads the rest.

    Below the detection limit few copies pass ``min_probability`` and the
    spectrum is the micrograph's own; above it the copies' power leaves
    the lowest rings.  On the micrographs of the module's docstring the
    residual reads 0.95 and 1.18 (white, SNR 100) and 3.2 and 3.8 (colored,
    SNR 3), and a fit continued with these spectra improved on the first
    in every L = 21 case of :doc:`/results`.  Copies the patch model
    cannot hold whole (a CTF's spread beyond the box) are picked less well,
    part of their power stays, and there the continued fit can be worse.

    Parameters
    ----------
    estimator : ApproxEMEstimator
        Fitted on ``X`` (or on micrographs like them); its ``ctf`` must
        describe ``X``.
    X : array-like of shape (N1, N2) or (n, N1, N2), or a sequence
        The micrographs, in any of the forms ``fit`` accepts (a Dask array
        is read one micrograph at a time).  Never modified.
    noise : {"colored", "auto"}, default="colored"
        ``"auto"``: a micrograph whose residual spectrum is flat within its
        error bar (:func:`~mtdlearn.imaging.noise.is_white`) gets ``None``
        (white noise), as ``noise="auto"`` decides from the micrograph.
    min_probability : float, default=0.5
        The least posterior probability of a pick that is subtracted, in
        ``[0, 1]``.
    tile_size : int, default=64
        :func:`~mtdlearn.imaging.noise.estimate_noise_psd`'s tiles.

    Returns
    -------
    psds : list of RadialPSD or None
        One per measurement; pass it as ``noise=`` to fit again (e.g. with
        ``warm_start=True``).  ``None`` entries (``noise="auto"``) are white.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.em.residual import residual_noise_psds
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 200,
    ...                             snr=10, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, random_state=0).fit(X)
    >>> residual_noise_psds(em, X, noise="auto")
    [None]
    """
    check_is_fitted(estimator, "coef_")
    if not (isinstance(noise, str) and noise in ("colored", "auto")):
        raise ValueError(f"noise must be 'colored' or 'auto', got {noise!r}")
    min_probability = check_real(min_probability, "min_probability", minimum=0.0, maximum=1.0)
    data = _patch_source(X, estimator.basis_.image_size)
    picks = estimator.predict(data)   # the same source: X is read and checked once
    return _spectra(estimator, data, picks, noise, min_probability, tile_size)


def _spectra(estimator, data, picks, noise, min_probability=0.5, tile_size=64, coef=None):
    """:func:`residual_noise_psds` from the picks of ``data`` (a patch source)
    of the image ``coef`` (default ``coef_``)."""
    n = len(data.measurements)
    ctfs = check_ctf(getattr(estimator, "ctf", None), n) or [None] * n
    psds = []
    for m, (M, ctf) in enumerate(zip(data.measurements, ctfs)):
        M = np.asarray(M, dtype=np.float64)   # a Dask micrograph is computed here
        mine = picks[(picks["measurement"] == m) & (picks["probability"] >= min_probability)]
        copies = _fitted_copies(estimator, M.shape, _distinct(mine, data.image_size), ctf, coef)
        residual = M - copies
        try:
            psd = estimate_noise_psd(residual, tile_size=tile_size)
        except ValueError as exc:
            if noise == "auto" and min(M.shape) < tile_size:   # too small: white, as fit does
                psds.append(None)
                continue
            raise ValueError(f"measurement {m}: {exc}") from None
        psds.append(None if noise == "auto" and is_white(psd) else psd)
    return psds


def _parameters(estimator):
    """The fitted parameters, as ``_patch_model``'s ``params`` (copies)."""
    weights = estimator._weights()
    return (np.array(estimator.coef_), np.array(estimator.shift_probabilities_),
            float(estimator.noise_variance_), None if weights is None else np.array(weights))


def _residual_spectra(estimator, X, params=None):
    """``noise="residual"``'s spectra of ``X`` under a fitted model.

    The copies of the first phase's model (the fit under ``"auto"``, kept
    by a ``noise="residual"`` fit; otherwise the fitted one) are picked
    under its noise model (each micrograph whitened by its own spectrum,
    or white where that is flat), then :func:`residual_noise_psds`'s rule
    (``"auto"``, ``min_probability=0.5``) reads what they leave.  On the
    micrographs a ``noise="residual"`` fit saw, these are its spectra
    (``noise_psds_``), computed again.  One list entry per measurement
    (``None``: white).  ``params``: the picker's parameters, if not these.
    (Picking with the final model under ``"auto"``
    instead fails where that model was fitted under other spectra: on one
    white micrograph of 400**2 at SNR 100, L = 11, its picks added power
    and the lowest ring read 1150x the noise's.)
    """
    check_is_fitted(estimator, "coef_")
    params = params or getattr(estimator, "_residual_picker", None) or _parameters(estimator)
    data = _patch_source(X, estimator.basis_.image_size)
    picks = estimator._predict(data, noise="auto", params=params)
    return _spectra(estimator, data, picks, "auto", coef=params[0])


_PICKER = ("coef", "shift_probabilities", "noise_variance", "weights")


def picker_state(estimator):
    """A ``noise="residual"`` fit's first-fit parameters as lists (``fit.json``), or ``None``."""
    params = getattr(estimator, "_residual_picker", None)
    return None if params is None else {
        key: None if value is None else np.asarray(value).tolist()
        for key, value in zip(_PICKER, params)}


def set_picker_state(estimator, state):
    """Give a rebuilt estimator the first-fit parameters :func:`picker_state` wrote (if any)."""
    if state is None:
        return
    estimator._residual_picker = tuple(
        None if state[key] is None else
        float(state[key]) if key == "noise_variance" else np.asarray(state[key], np.float64)
        for key in _PICKER)


def fit_residual(estimator, fit, X, y=None):
    """``noise="residual"``'s fit: under ``"auto"``, then under the residual's spectra.

    ``fit`` (the loop's own) runs twice on one patch source: first with
    each micrograph whitened by its own spectrum (``"auto"``), then, from
    that result (a warm start), with the spectra of what its copies leave
    (``_residual_spectra``).  A first phase that ends degenerate is the
    result (nothing to subtract).  ``n_iter_`` counts both phases,
    ``auto_noise_n_iter_`` the first, and ``log_likelihood_history_`` holds
    both (each phase's log-likelihood is a different objective).
    """
    data = _patch_source(X, estimator._validate_params())   # read and checked once
    estimator._phase_noise = "auto"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(data, y)
        if estimator.degenerate_ is not None:   # its warning says so: the result
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            return estimator
        for w in caught:   # the first phase's convergence is not the fit's
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        first = {key: getattr(estimator, key) for key in estimator._extra_attributes}
        n_first, history = estimator.n_iter_, list(estimator.log_likelihood_history_)
        picker = _parameters(estimator)   # predict and score pick with it too
        estimator._phase_noise = _residual_spectra(estimator, data, picker)
        estimator._phase_warm = True
        fit(data, y)
    finally:
        for key in ("_phase_noise", "_phase_warm"):
            if hasattr(estimator, key):
                delattr(estimator, key)
    for key, value in first.items():   # e.g. white_noise_n_iter_: the first phase's
        if not hasattr(estimator, key):
            setattr(estimator, key, value)
    estimator._residual_picker = picker
    estimator.auto_noise_n_iter_ = n_first
    estimator.n_iter_ += n_first
    if "n_e_steps_" in first:   # the honest measure of work: both phases
        estimator.n_e_steps_ += first["n_e_steps_"]
    estimator.log_likelihood_history_ = history + list(estimator.log_likelihood_history_)
    estimator._extra_attributes = tuple(dict.fromkeys(
        estimator._extra_attributes + tuple(first) + ("_residual_picker", "auto_noise_n_iter_")))
    return estimator
