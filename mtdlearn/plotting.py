"""Plots of measurements, estimates, convergence and shift distributions.

matplotlib is an optional dependency (``pip install mtdlearn[plot]``); it is
imported when a function is called, so ``import mtdlearn.plotting`` works
without it.  Every function takes an optional ``ax`` (or ``axes``), creates a
figure when none is given, and returns what it drew on.
"""

from numbers import Integral

import numpy as np

from ._validation import check_array_float, check_int
from .basis.protocol import check_basis
from .metrics import align_rotation

__all__ = ["plot_measurement", "plot_images", "plot_convergence",
           "plot_shift_probabilities"]

#: Colours of the overlays (detections, truth).
DETECTION_COLOR = "tab:orange"
TRUTH_COLOR = "tab:cyan"


def _pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install mtdlearn[plot]") from None
    return plt


def _get_ax(ax, **subplots_kw):
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(**subplots_kw)
    elif not hasattr(ax, "imshow"):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


# ---------------------------------------------------------------------------
def _corners(value, name, selected):
    """(row, col) corners of ``value`` that belong to measurement ``selected``.

    ``value`` is a structured array with fields ``row`` and ``col`` (and
    optionally ``measurement``), as returned by ``predict``, or an integer
    array of shape (k, 2).
    """
    arr = np.asarray(value)
    if arr.dtype.names is not None:
        missing = {"row", "col"} - set(arr.dtype.names)
        if missing:
            raise ValueError(f"{name} must have fields 'row' and 'col' (as returned by "
                             f"predict); missing {sorted(missing)}")
        arr = arr.reshape(-1)
        keep = np.ones(arr.size, dtype=bool)
        if "measurement" in arr.dtype.names:
            keep = arr["measurement"] == selected
        return np.stack([arr["row"][keep], arr["col"][keep]], axis=1).astype(np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2 or not (
            np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name} must be a structured array with fields 'row' and 'col' or "
                         f"an integer array of shape (k, 2); got dtype {arr.dtype} and "
                         f"shape {arr.shape}")
    return arr.astype(np.int64).reshape(-1, 2)


def _truth_corners(truth, selected):
    if not hasattr(truth, "positions"):
        raise TypeError("truth must be a MeasurementTruth (from make_measurement) or an "
                        f"object with a positions attribute, got {type(truth).__name__}")
    pos = np.asarray(truth.positions)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"truth.positions must have shape (p, 2), got {pos.shape}")
    meas = getattr(truth, "measurement", None)
    if meas is not None:
        meas = np.asarray(meas)
        if meas.shape != (pos.shape[0],):
            raise ValueError(f"truth.measurement must have shape ({pos.shape[0]},), "
                             f"got {meas.shape}")
        pos = pos[meas == selected]
    return pos.astype(np.int64)


def _squares(corners, L, height, width, color, linestyle, gid):
    """One PatchCollection of ``L x L`` outlines at the corners that touch the
    displayed ``height x width`` region (pixel ``(i, j)`` covers
    ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]``)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    r, c = corners[:, 0], corners[:, 1]
    visible = (r < height) & (c < width) & (r + L > 0) & (c + L > 0)
    rects = [Rectangle((cc - 0.5, rr - 0.5), L, L) for rr, cc in corners[visible]]
    coll = PatchCollection(rects, facecolor="none", edgecolor=color, linewidth=1.2,
                           linestyle=linestyle)
    coll.set_gid(gid)
    return coll


def plot_measurement(X, detections=None, truth=None, image_size=None, ax=None,
                     max_side=None, measurement=0):
    """Show a measurement, optionally with detected and true copy positions.

    The measurement is drawn in grey.  Detections from
    :meth:`~mtdlearn.BaseMTDEstimator.predict` are outlined as ``L x L``
    squares with their top-left corner at ``(row, col)``; true positions
    (``truth.positions`` of :func:`~mtdlearn.make_measurement`) are outlined
    in another colour and dashed.

    Parameters
    ----------
    X : array-like of shape (N1, N2) or (n, N1, N2)
        One measurement, or a stack from which ``X[measurement]`` is shown.
    detections : structured ndarray, default=None
        Output of ``predict``: fields ``row``, ``col`` and ``measurement``;
        only rows with ``measurement == measurement`` are drawn.  An integer
        array of shape (k, 2) of ``(row, col)`` corners is accepted too.
    truth : MeasurementTruth, default=None
        Ground truth of a simulated measurement; its copies in measurement
        ``measurement`` are drawn.
    image_size : int, default=None
        Side ``L`` of the squares.  ``None`` takes ``truth.basis.image_size``;
        it is required when ``detections`` are given without ``truth``.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a new figure.
    max_side : int, default=None
        Show only the top-left ``max_side x max_side`` region (large
        measurements are unreadable, and slow, drawn whole).  Squares that
        touch the region are drawn, clipped at its border.
    measurement : int, default=0
        Which measurement of a stack to show, and which detections and true
        copies to draw.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The detections and the true copies are one
        :class:`~matplotlib.collections.PatchCollection` each in
        ``ax.collections``, with gid ``"detections"`` and ``"truth"``.

    See Also
    --------
    mtdlearn.BaseMTDEstimator.predict : Maximum-a-posteriori occurrences.
    mtdlearn.make_measurement : Simulated measurements and their truth.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis, make_target, make_measurement
    >>> from mtdlearn.plotting import plot_measurement
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 200, snr=5, random_state=0)
    >>> ax = plot_measurement(X, truth=truth, max_side=100)
    """
    arr = np.asarray(X)
    if arr.ndim not in (2, 3):
        raise ValueError(f"X must be one measurement (N1, N2) or a stack (n, N1, N2), "
                         f"got shape {arr.shape}")
    if not isinstance(measurement, Integral) or isinstance(measurement, bool):
        raise TypeError(f"measurement must be an integer, got {type(measurement).__name__}")
    n_meas = arr.shape[0] if arr.ndim == 3 else None
    if n_meas is not None and not 0 <= measurement < n_meas:
        raise ValueError(f"measurement must be in [0, {n_meas - 1}] for a stack of "
                         f"{n_meas} measurements, got {measurement}")
    if n_meas is None and measurement < 0:
        raise ValueError(f"measurement must be >= 0, got {measurement}")
    M = arr[measurement] if n_meas is not None else arr
    if max_side is not None:
        max_side = check_int(max_side, "max_side", minimum=1)
        M = M[:max_side, :max_side]
    M = check_array_float(M, "X", dtype=None)  # only the shown region is read
    height, width = M.shape

    L = None
    if truth is not None and getattr(truth, "basis", None) is not None:
        L = int(truth.basis.image_size)
    if image_size is not None:
        size = check_int(image_size, "image_size", minimum=1)
        if L is not None and size != L:
            raise ValueError(f"image_size={size} does not match truth.basis.image_size={L}")
        L = size
    if detections is not None and L is None:
        raise ValueError("image_size is required to draw detections without truth")

    ax = _get_ax(ax)
    ax.imshow(M, cmap="gray", interpolation="nearest", origin="upper")
    handles = []
    if truth is not None:
        corners = _truth_corners(truth, measurement)
        if L is None:
            raise ValueError("image_size is required when truth has no basis")
        ax.add_collection(_squares(corners, L, height, width, TRUTH_COLOR, "--", "truth"),
                          autolim=False)
        handles.append(("true copies", TRUTH_COLOR, "--"))
    if detections is not None:
        corners = _corners(detections, "detections", measurement)
        ax.add_collection(_squares(corners, L, height, width, DETECTION_COLOR, "-",
                                   "detections"), autolim=False)
        handles.append(("detections", DETECTION_COLOR, "-"))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    if handles:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor="none", edgecolor=c, linestyle=ls, label=lab)
                           for lab, c, ls in handles], loc="upper right", fontsize="small")
    return ax


# ---------------------------------------------------------------------------
def _as_coef_list(estimates, p):
    """Estimates as a list of (p,) vectors (a fitted estimator gives its ``coef_``)."""
    if hasattr(estimates, "coef_"):
        estimates = [estimates]
    elif not isinstance(estimates, (list, tuple, np.ndarray)):
        raise TypeError("estimates must be a coefficient vector, a sequence of them, a 2-D "
                        f"array or a fitted estimator, got {type(estimates).__name__}")
    elif not any(hasattr(e, "coef_") for e in estimates):
        try:
            arr = np.asarray(estimates, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("estimates must be one coefficient vector or a sequence of "
                             "vectors of equal length n_functions") from None
        if arr.ndim == 1:
            estimates = [arr]
        elif arr.ndim != 2:
            raise ValueError("estimates must be one coefficient vector or a 2-D array "
                             f"(n_estimates, n_functions), got shape {arr.shape}")
    out = []
    for i, est in enumerate(estimates):
        name = f"estimates[{i}]"
        if hasattr(est, "coef_"):
            est = est.coef_
            name += ".coef_"
        vec = check_array_float(est, name)
        if vec.shape != (p,):
            raise ValueError(f"{name} must have shape ({p},) (basis.n_functions), "
                             f"got {vec.shape}")
        out.append(vec)
    if not out:
        raise ValueError("estimates must hold at least one coefficient vector")
    return out


def plot_images(true_coef, estimates, basis, labels=None, axes=None):
    """The true image next to one or more estimates, each rotated into alignment.

    Each estimate is rotated by the angle that minimizes the relative error
    of eq. (19) (:func:`~mtdlearn.metrics.align_rotation`), so images that
    differ only by the unrecoverable global rotation look the same.  All
    panels share one colour scale; each estimate's title gives its relative
    error.

    Parameters
    ----------
    true_coef : array-like of shape (n_functions,)
        Coefficients of the true image.
    estimates : array-like of shape (n_functions,) or (n_estimates, n_functions)
        One or more estimated coefficient vectors (a sequence of vectors or
        of fitted estimators, whose ``coef_`` is used, is accepted too).
    basis : FourierBesselBasis
        The basis of the coefficients.
    labels : sequence of str, default=None
        One label per estimate; ``None`` numbers them.
    axes : array-like of matplotlib.axes.Axes, default=None
        At least ``1 + n_estimates`` axes (the true image first); ``None``
        creates a figure with one row of panels.

    Returns
    -------
    axes : ndarray of matplotlib.axes.Axes of shape (1 + n_estimates,)
        The true image, then the aligned estimates.

    See Also
    --------
    mtdlearn.relative_error : The error of eq. (19).
    mtdlearn.metrics.align_rotation : The aligning rotation.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis, make_target
    >>> from mtdlearn.plotting import plot_images
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> axes = plot_images(coef, basis.rotate(coef, 1.0), basis, labels=["rotated copy"])
    """
    check_basis(basis)
    p = basis.n_functions
    true_coef = check_array_float(true_coef, "true_coef")
    if true_coef.shape != (p,):
        raise ValueError(f"true_coef must have shape ({p},) (basis.n_functions), "
                         f"got {true_coef.shape}")
    if not np.any(true_coef):
        raise ValueError("true_coef is zero: the relative error is undefined")
    ests = _as_coef_list(estimates, p)
    n = len(ests)
    if labels is None:
        labels = ["estimate"] if n == 1 else [f"estimate {i + 1}" for i in range(n)]
    else:
        if isinstance(labels, str):
            labels = [labels]
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"labels must have one entry per estimate ({n}), "
                             f"got {len(labels)}")

    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, n + 1, figsize=(2.6 * (n + 1) + 0.8, 2.8),
                                 squeeze=False)
        axes = axes[0]
    else:
        axes = np.asarray(axes, dtype=object).ravel()
        if axes.size < n + 1:
            raise ValueError(f"axes must hold at least {n + 1} Axes (the true image and "
                             f"{n} estimate(s)), got {axes.size}")
        axes = axes[:n + 1]
        fig = axes[0].figure

    images, titles = [basis.evaluate(true_coef)], ["true image"]
    for est, label in zip(ests, labels):
        angle, error = align_rotation(true_coef, est, basis)
        images.append(basis.evaluate(basis.rotate(est, angle)))
        titles.append(f"{label}\nrelative error {error:.3g}")
    vmin = min(float(im.min()) for im in images)
    vmax = max(float(im.max()) for im in images)
    if vmax <= vmin:
        vmax = vmin + 1.0
    for a, im, title in zip(axes, images, titles):
        mappable = a.imshow(im, cmap="viridis", vmin=vmin, vmax=vmax,
                            interpolation="nearest", origin="upper")
        a.set_title(title, fontsize="medium")
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(mappable, ax=list(axes), shrink=0.8)
    return np.asarray(axes, dtype=object)


# ---------------------------------------------------------------------------
def _history(obj):
    name = "estimator_or_history"
    if hasattr(obj, "log_likelihood_history_"):
        values = obj.log_likelihood_history_
        name = "estimator_or_history.log_likelihood_history_"
    elif hasattr(obj, "fit"):
        raise ValueError(f"{name} has no log_likelihood_history_: pass a fitted "
                         f"ApproxEMEstimator or a sequence of values, got an unfitted or "
                         f"unsupported {type(obj).__name__}")
    else:
        values = obj
    try:
        hist = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers") from None
    if hist.ndim != 1 or hist.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {hist.shape}")
    if not np.all(np.isfinite(hist)):
        raise ValueError(f"{name} must contain only finite values")
    return hist


def plot_convergence(estimator_or_history, ax=None, show_gain=False):
    """Mean log-likelihood per patch against the EM iteration.

    EM does not decrease the (approximate) log-likelihood (up to rounding),
    so the curve rises and flattens; with a float ``tol`` the fit stops when
    the gain of one iteration falls below it (``tol="auto"``: when the
    image's projected change is small, ``remaining_change_``).

    Parameters
    ----------
    estimator_or_history : ApproxEMEstimator or sequence of float
        A fitted estimator (its ``log_likelihood_history_`` is plotted; the
        first entry is the start, before any iteration) or the values.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a new figure.
    show_gain : bool, default=False
        Also draw the gain per iteration, ``|Q_k - Q_{k-1}|``, on a log scale
        on a twin axis (decreases, which EM should never make, as red
        crosses).  A float ``tol`` is compared with this gain.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The log-likelihood axes (the gain axes, if drawn, is its twin).

    See Also
    --------
    mtdlearn.ApproxEMEstimator : Records ``log_likelihood_history_``.

    Examples
    --------
    >>> from mtdlearn.plotting import plot_convergence
    >>> ax = plot_convergence([-60.0, -52.0, -51.5, -51.49])
    """
    hist = _history(estimator_or_history)
    ax = _get_ax(ax)
    from matplotlib.ticker import MaxNLocator

    it = np.arange(hist.size)
    ax.plot(it, hist, "o-", color="tab:blue", markersize=3, label="log-likelihood")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean log-likelihood per patch", color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if show_gain and hist.size > 1:
        gain = np.diff(hist)
        twin = ax.twinx()
        pos = gain > 0
        twin.semilogy(it[1:][pos], gain[pos], "s--", color="tab:gray", markersize=3,
                      label="gain")
        neg = gain < 0
        if np.any(neg):
            twin.semilogy(it[1:][neg], -gain[neg], "x", color="tab:red", label="decrease")
        twin.set_ylabel("gain per iteration", color="tab:gray")
    return ax


# ---------------------------------------------------------------------------
def plot_shift_probabilities(shift_probabilities, ax=None, mask_empty=True):
    """Heatmap of the shift distribution ``rho`` (paper eq. 12 and 18).

    Entry ``[l_0, l_1]`` is the probability that a patch is
    ``C T_l Z F_phi`` with ``l = (l_0, l_1)``; the copy's top-left corner then
    sits at offset ``d = (-l) mod 2L`` (mapped to ``[-(L-1), L-1]``) in the
    patch.  The empty shifts, row ``L`` and column ``L``, are marked.

    Parameters
    ----------
    shift_probabilities : array-like of shape (2L, 2L) or fitted estimator
        The table ``rho`` (non-negative), or an estimator whose
        ``shift_probabilities_`` is used.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a new figure.
    mask_empty : bool, default=True
        Grey out the empty shifts and leave them out of the colour scale
        (at low density they hold almost all the mass and would flatten
        the rest); their total mass is given in the title.  ``False``
        colours them like the others and only outlines them.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The outline of the empty shifts is a patch with gid ``"empty-shifts"``.

    See Also
    --------
    mtdlearn.imaging.shifts.density_to_shift_probabilities : ``rho`` of a density.
    mtdlearn.imaging.shifts.shift_to_offset : Offset of the copy for a shift.

    Examples
    --------
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.plotting import plot_shift_probabilities
    >>> ax = plot_shift_probabilities(density_to_shift_probabilities(0.04, 5))
    """
    name = "shift_probabilities"
    if hasattr(shift_probabilities, "shift_probabilities_"):
        shift_probabilities = shift_probabilities.shift_probabilities_
        name = "shift_probabilities.shift_probabilities_"
    rho = check_array_float(shift_probabilities, name)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1] or rho.shape[0] < 2 or rho.shape[0] % 2:
        raise ValueError(f"{name} must have shape (2L, 2L), got {rho.shape}")
    if np.any(rho < 0):
        raise ValueError(f"{name} must be non-negative")
    L = rho.shape[0] // 2
    empty = np.zeros(rho.shape, dtype=bool)
    empty[L, :] = True
    empty[:, L] = True

    ax = _get_ax(ax)
    plt = _pyplot()
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    if mask_empty:
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
        shown = np.ma.masked_array(rho, mask=empty)
        im = ax.imshow(shown, cmap=cmap, interpolation="nearest", origin="upper")
        ax.set_title(f"empty shifts (grey): total mass {rho[empty].sum():.3g}",
                     fontsize="medium")
    else:
        im = ax.imshow(rho, cmap="viridis", interpolation="nearest", origin="upper")
    ax.figure.colorbar(im, ax=ax, label=r"$\rho[\ell]$")
    # outline of the cross formed by row L and column L
    lo, hi, a, b = -0.5, 2 * L - 0.5, L - 0.5, L + 0.5
    verts = [(lo, a), (hi, a), (hi, b), (lo, b), (lo, a),
             (a, lo), (b, lo), (b, hi), (a, hi), (a, lo)]
    codes = [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY] * 2
    cross = PathPatch(Path(verts, codes), facecolor="none", edgecolor="tab:red",
                      hatch="//" if mask_empty else None, linewidth=1.2,
                      label=f"empty shifts ($\\ell_0 = {L}$ or $\\ell_1 = {L}$)")
    cross.set_gid("empty-shifts")
    ax.add_patch(cross)
    ticks = np.arange(2 * L)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel(r"$\ell_1$ (column shift)")
    ax.set_ylabel(r"$\ell_0$ (row shift)")
    ax.set_xlim(-0.5, 2 * L - 0.5)
    ax.set_ylim(2 * L - 0.5, -0.5)
    return ax
