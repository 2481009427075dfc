"""The fitted model patch by patch: log-likelihoods, posteriors, MAP detections.

What ``score_samples``, ``predict_proba`` and ``predict`` report: the
E-step of :mod:`mtdlearn.likelihood.patch_model` (its chunks, tasks and kernels), kept
per patch instead of reduced to sufficient statistics.  Outputs are filled
task by task, and :func:`estep_detections` keeps only the patches that hold
a detection, so no temporary grows with the data beyond the output itself;
:func:`iter_detections` hands them over one measurement at a time (on a Dask
source, each micrograph's detections are found on its worker and only they
come to the client).
"""

import numpy as np

from .._parallel import ordered_map
from .fft_estep import (FFTPatchModel, _chunk, build_fft_patch_model, choose_estep,
                        fft_chunk_size)
from .patch_model import (_EXP_FLOOR, _chunk_posteriors, _get_augmented, _patch_loglik,
                          build_patch_model)
from .statistics import _check_subset, _distributed_subset, _partition, _tasks
from ..data.patches import PatchData

__all__ = ["build_per_patch_model", "estep_per_patch", "estep_detections", "iter_detections"]


def build_per_patch_model(coef, shift_probabilities, noise_variance, hypotheses, weights=None):
    """The float64 model of the per-patch E-step, for the kernel that costs less.

    :func:`mtdlearn.likelihood.fft_estep.choose_estep` decides, as for the fit: the
    GEMM's :class:`~mtdlearn.likelihood.patch_model.PatchModel` (an ``H x L**2`` table
    of templates: 14 MB at ``L = 11``, ``K = 16``, but 1.4 GB at ``L = 41``)
    or the FFT's :class:`~mtdlearn.likelihood.fft_estep.FFTPatchModel` (``K`` spectra).
    Every function of this module takes either; the two give the same
    numbers to rounding.

    Parameters
    ----------
    coef : ndarray of shape (p,)
        Image coefficients.
    shift_probabilities : ndarray of shape (2L, 2L)
        ``rho``.
    noise_variance : float
        ``sigma**2``.
    hypotheses : HypothesisSpace
        Basis and rotations.
    weights : array-like of shape (C,), default=None
        The components' abundances; ``None``: equal.

    Returns
    -------
    model : PatchModel or FFTPatchModel
        The parameters laid out for the chosen kernel, in float64.

    Examples
    --------
    >>> from mtdlearn import FourierBesselBasis, make_target
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.posteriors import build_per_patch_model
    >>> for L in (5, 21):
    ...     basis = FourierBesselBasis(L, n_coefficients=10)
    ...     model = build_per_patch_model(make_target(basis, random_state=0),
    ...                                   density_to_shift_probabilities(0.05, L), 1.0,
    ...                                   HypothesisSpace(basis, [0.0, 3.14]))
    ...     print(L, type(model).__name__)
    5 PatchModel
    21 FFTPatchModel
    """
    build = (build_fft_patch_model if choose_estep(hypotheses.image_size,
                                                   hypotheses.n_rotations) == "fft"
             else build_patch_model)
    return build(coef, shift_probabilities, noise_variance, hypotheses, weights=weights)


def _per_patch_range_fft(data, model, start, stop, step, components=False):
    """:func:`_per_patch_range` with the FFT kernel (:func:`mtdlearn.likelihood.fft_estep._chunk`)."""
    L = model.hypotheses.image_size
    out = _per_patch_outputs(stop - start, model, components)
    buf = np.empty((min(step, stop - start), L * L), dtype=model.dtype)
    clamped = _clamped_mass_fft(model) if components else None
    for c0 in range(start, stop, step):
        c1 = min(stop, c0 + step)
        sl = slice(c0 - start, c1 - start)
        P = data.get(c0, c1, out=buf[:c1 - c0]).reshape(-1, L, L)
        E, u, s, e_empty, _, _ = _chunk(P, model)
        # the hypotheses' entries of the lag grids, in the hypotheses' order
        E = E[:, :, model.lag_index].reshape(len(P), -1)
        _keep_per_patch(out, sl, E, u, s, e_empty, L * L, model)
        if components:
            _keep_components(out[4], sl, E, s, clamped)
    return out


def _per_patch_outputs(n, model=None, components=False):
    """Empty ``(loglik, best, best_p, p_empty)`` of ``n`` patches, and with
    ``components`` their ``(n, C)`` posterior masses of ``model``'s components."""
    out = (np.empty(n), np.empty(n, dtype=np.int64), np.empty(n), np.empty(n))
    if components:
        out += (np.empty((n, model.hypotheses.n_components)),)
    return out


def _keep_components(mass, sl, E, s, clamped=None):
    """Write a chunk's posterior mass of each component into ``mass[sl]``.

    ``E`` (c, H) holds the posterior numerators in the hypotheses' order,
    component-major (:class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`),
    so a component's hypotheses are one contiguous block of each row: its
    mass is the block's sum over ``s``, one GEMV over ``E`` as for ``s``
    itself.  ``clamped`` (C,), if given, is the mass each component's clamped
    hypotheses keep in ``s`` (the FFT kernel's exact zeros, ``_EXP_FLOOR``).
    """
    C = mass.shape[1]
    c, H = E.shape
    E = np.ascontiguousarray(E)
    block = E.reshape(c * C, H // C) @ np.ones(H // C, dtype=E.dtype)
    m = block.reshape(c, C).astype(np.float64)
    if clamped is not None:
        m += clamped
    mass[sl] = m / s[:, None]


def _clamped_mass_fft(model):
    """Per component, the mass the FFT kernel's clamped hypotheses keep in the
    row sums (``floor`` times the component's possible hypotheses), or ``None``
    when clamped hypotheses are not exact zeros (float64)."""
    floor = float(_EXP_FLOOR[np.dtype(model.dtype)])
    if not floor:
        return None
    space = model.hypotheses
    per_component = space.n_rotations * model.grid_size ** 2   # lag-grid entries
    impossible = np.bincount(model.impossible // per_component,
                             minlength=space.n_components)
    return floor * (per_component - impossible)


def _keep_per_patch(out, sl, E, u, s, e_empty, d, model):
    """Write a chunk's log-likelihoods, MAP hypotheses and posteriors into ``out[sl]``
    (``E``: its posterior numerators, one column per hypothesis)."""
    ll, best, best_p, p_empty = out[:4]
    ll[sl] = _patch_loglik(u, s, d, model)
    arg = E.argmax(axis=1)
    emax = E[np.arange(len(arg)), arg]
    use_empty = e_empty >= emax
    best[sl] = np.where(use_empty, -1, arg)
    best_p[sl] = np.where(use_empty, e_empty, emax) / s
    p_empty[sl] = e_empty / s


def _kernel(data, model, subset, chunk, working_memory, tasks_per_block):
    """The chunk size, the task partition and the per-range function of ``model``'s kernel."""
    if isinstance(model, FFTPatchModel):
        if chunk is None:
            chunk = fft_chunk_size(model.hypotheses, working_memory, model.dtype.itemsize)
        return chunk, _partition(data, subset, chunk, tasks_per_block), _per_patch_range_fft
    chunk, ranges = _tasks(data, model, subset, chunk, working_memory, tasks_per_block)
    return chunk, ranges, _per_patch_range


def _per_patch_range(data, model, start, stop, step, components=False):
    n = stop - start
    d = model.templates.shape[1]
    out = _per_patch_outputs(n, model, components)
    Pa_buf = np.empty((min(step, n), d + 2), dtype=model.dtype)
    E_buf = np.empty((min(step, n), model.templates.shape[0]), dtype=model.dtype)
    for c0 in range(start, stop, step):
        c1 = min(stop, c0 + step)
        Pa, sq = _get_augmented(data, c0, c1, model, out=Pa_buf)
        E, u, s, e_empty = _chunk_posteriors(Pa, sq, model, out=E_buf)
        sl = slice(c0 - start, c1 - start)
        _keep_per_patch(out, sl, E, u, s, e_empty, d, model)
        if components:
            _keep_components(out[4], sl, E, s)
    return out


def estep_per_patch(data, model, subset=None, *, chunk=None, n_jobs=None, working_memory=None,
                    tasks_per_block=8, components=False):
    """Run the E-step patch by patch: likelihoods and MAP hypotheses.

    Used by ``score_samples``, ``predict`` and ``predict_proba``; chunked
    and threaded like :func:`~mtdlearn.likelihood.statistics.estep_statistics`.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel or FFTPatchModel
        The parameters (:func:`build_per_patch_model`).
    subset : (int, int), default=None
        Only the patches ``start..stop-1``; ``None`` means all.  On a
        distributed source, whole measurements only (``start`` and ``stop``
        among ``data.offsets``).
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with
        :func:`~mtdlearn.likelihood.patch_model.chunk_size`.
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    working_memory : float, default=None
        Budget in MiB per thread for choosing ``chunk``.
    tasks_per_block : int, default=8
        Chunks per joblib task.
    components : bool, default=False
        Also return each patch's posterior mass of every component (a
        fifth output); computed only when asked, chunk by chunk.

    Returns
    -------
    log_likelihood : ndarray of shape (n,)
        ``log p(M_m | alpha, rho)`` of each patch (eq. 5 terms, Gaussian
        constant included).
    best : ndarray of shape (n,), int
        Index of the MAP hypothesis (see :class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`), or
        ``-1`` when the empty hypothesis wins.
    best_posterior : ndarray of shape (n,)
        Posterior probability of the MAP hypothesis.
    empty_posterior : ndarray of shape (n,)
        Posterior probability of the empty hypothesis.
    component_posterior : ndarray of shape (n, C)
        Only with ``components``: the posterior probability that the patch
        holds a copy of kind ``c`` (the mass of all of component ``c``'s
        hypotheses: every rotation and non-empty shift); a row sums to
        ``1 - empty_posterior``.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.posteriors import estep_per_patch
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, space)
    >>> loglik, best, best_p, p_empty = estep_per_patch(PatchData([X], 5), model, chunk=64)
    >>> loglik.shape, best.shape
    ((400,), (400,))

    Per component, for a mixture of two kinds of particle:

    >>> space2 = HypothesisSpace(basis, UniformRotationGrid(4).get_angles(), n_components=2)
    >>> model2 = build_patch_model(np.stack([coef, -coef]),
    ...                            density_to_shift_probabilities(0.04, 5),
    ...                            truth.noise_variance, space2, weights=[0.3, 0.7])
    >>> *_, p_empty, mass = estep_per_patch(PatchData([X], 5), model2, components=True)
    >>> mass.shape, bool(np.allclose(mass.sum(axis=1), 1 - p_empty))
    ((400, 2), True)
    """
    start, stop = (0, data.n_patches) if subset is None else subset
    out = None
    for a, b, part in _per_patch_parts(data, model, subset, chunk, n_jobs, working_memory,
                                       tasks_per_block, components):
        if out is None:  # the outputs, filled task by task: no second copy
            out = [np.empty((stop - start,) + p.shape[1:], dtype=p.dtype) for p in part]
        for o, p in zip(out, part):
            o[a - start:b - start] = p
    return tuple(out)


def _block_per_patch(block, image_size, model, chunk, tasks_per_block, components=False):
    """:func:`estep_per_patch` of one measurement (a block of a distributed source)."""
    return estep_per_patch(PatchData([block], image_size), model, chunk=chunk,
                           tasks_per_block=tasks_per_block, components=components)


def _per_patch_parts(data, model, subset, chunk, n_jobs, working_memory, tasks_per_block,
                     components=False):
    """Yield ``(start, stop, (loglik, best, best_p, p_empty[, component_mass]))`` task by
    task, in order (one measurement at a time on a distributed source, where the
    tasks run)."""
    chunk, ranges, per_range = _kernel(data, model, subset, chunk, working_memory,
                                       tasks_per_block)
    if data.distributed:
        start = 0 if subset is None else subset[0]
        data = _distributed_subset(data, subset)
        parts = data.map_blocks(_block_per_patch, data.image_size, model, chunk,
                                tasks_per_block, components)
        for i, part in enumerate(parts):
            yield start + int(data.offsets[i]), start + int(data.offsets[i + 1]), part
        return
    parts = ordered_map(lambda i, a, b: per_range(data, model, a, b, chunk, components),
                        ranges, n_jobs)
    for (_, a, b), part in zip(ranges, parts):
        yield a, b, part


def estep_detections(data, model, subset=None, *, chunk=None, n_jobs=None, working_memory=None,
                     tasks_per_block=8):
    """Find the patches whose maximum-a-posteriori hypothesis is not empty.

    The E-step of :func:`estep_per_patch`, keeping, task by task, only the
    patches that hold a detection: memory grows with the detections, not
    with the patches.  Used by ``predict``.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel or FFTPatchModel
        The parameters (:func:`build_per_patch_model`).
    subset : (int, int), default=None
        Only the patches ``start..stop-1``; ``None`` means all.  On a
        distributed source any range too: each measurement it touches runs
        on its worker over its own part of the range, and only the
        detections come back.
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with
        :func:`~mtdlearn.likelihood.patch_model.chunk_size`.
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    working_memory : float, default=None
        Budget in MiB per thread for choosing ``chunk``.
    tasks_per_block : int, default=8
        Chunks per joblib task.

    Returns
    -------
    patch : ndarray of shape (n_detections,), int
        Indices of the patches whose MAP hypothesis is not empty, ascending.
    best : ndarray of shape (n_detections,), int
        Their MAP hypothesis (see :class:`~mtdlearn.likelihood.hypotheses.HypothesisSpace`).
    best_posterior : ndarray of shape (n_detections,)
        Its posterior probability.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.posteriors import estep_detections, estep_per_patch
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, space)
    >>> patch, best, best_p = estep_detections(PatchData([X], 5), model, chunk=64)
    >>> full = estep_per_patch(PatchData([X], 5), model)[1]
    >>> bool(np.array_equal(patch, np.flatnonzero(full >= 0)))
    True
    """
    if subset is None:
        kept = [part[1:] for part in iter_detections(
            data, model, chunk=chunk, n_jobs=n_jobs, working_memory=working_memory,
            tasks_per_block=tasks_per_block)]
    elif data.distributed:
        kept = _distributed_detections(data, model, subset, chunk, working_memory,
                                       tasks_per_block)
    else:
        kept = [_detections_of(a, part) for a, _, part in _per_patch_parts(
            data, model, subset, chunk, n_jobs, working_memory, tasks_per_block)]
    return tuple(np.concatenate([k[i] for k in kept]) for i in range(3))


def _distributed_detections(data, model, subset, chunk, working_memory, tasks_per_block):
    """The detections among the patches ``subset`` of a distributed source.

    Each measurement the range touches runs on its worker, over its own part
    of the range; only the detections travel.  The measurements the range
    holds whole run as one batch, the (at most two) it cuts one by one.
    """
    start, stop = _check_subset(data, subset)
    offsets = [int(o) for o in data.offsets]
    touched = [j for j in range(len(offsets) - 1)
               if offsets[j] < stop and offsets[j + 1] > start]
    whole = [j for j in touched if start <= offsets[j] and offsets[j + 1] <= stop]
    found = dict(zip(whole, data.take(whole).map_blocks(
        _block_detections, data.image_size, model, chunk, tasks_per_block,
        working_memory=working_memory) if whole else []))
    for j in touched:
        if j not in found:                      # cut by the range: its own part
            local = (max(start - offsets[j], 0), min(stop, offsets[j + 1]) - offsets[j])
            found[j], = data.take([j]).map_blocks(
                _block_detections, data.image_size, model, chunk, tasks_per_block,
                subset=local, working_memory=working_memory)
    return [(patch + offsets[j], best, p) for j in touched for patch, best, p in [found[j]]]


def _detections_of(start, part):
    """``(patch, best, best_p)`` of the patches of a task whose MAP is not empty."""
    _, best, best_p, _ = part
    keep = np.flatnonzero(best >= 0)
    return keep + start, best[keep], best_p[keep]


def _block_detections(block, image_size, model, chunk, tasks_per_block, subset=None,
                      working_memory=None):
    """:func:`estep_detections` of one measurement (a block of a distributed source),
    or of its patches ``subset``; indices local to the measurement."""
    return estep_detections(PatchData([block], image_size), model, subset, chunk=chunk,
                            working_memory=working_memory, tasks_per_block=tasks_per_block)


def iter_detections(data, model, *, chunk=None, n_jobs=None, working_memory=None,
                    tasks_per_block=8):
    """Yield the detections of :func:`estep_detections` one measurement at a time.

    The same tasks, in the same order; the detections of a measurement are
    yielded as soon as its last task is done, so a consumer that writes
    them (``predict_per_measurement``, :func:`mtdlearn.data.star.write_star_per_micrograph`)
    holds one measurement's at a time.  On a distributed source
    (:mod:`mtdlearn.data._dask`) each measurement's detections are found by a
    task on the worker that holds it and brought to the client in turn
    (``DaskPatchData.iter_blocks``): only the detections travel, never the
    per-patch arrays.

    Parameters
    ----------
    data : PatchData
        The patches.
    model : PatchModel or FFTPatchModel
        The parameters (:func:`build_per_patch_model`).
    chunk : int, default=None
        Patches per chunk; ``None`` chooses it with
        :func:`~mtdlearn.likelihood.patch_model.chunk_size`.
    n_jobs : int, default=None
        Threads over the tasks; ``None`` is 1.
    working_memory : float, default=None
        Budget in MiB per thread for choosing ``chunk``.
    tasks_per_block : int, default=8
        Chunks per joblib task.

    Yields
    ------
    measurement : int
        Index of the measurement, ascending; every measurement is yielded,
        with empty arrays when it holds no detection.
    patch : ndarray of shape (n_detections,), int
        Global indices of its patches whose MAP hypothesis is not empty, ascending.
    best : ndarray of shape (n_detections,), int
        Their MAP hypothesis.
    best_posterior : ndarray of shape (n_detections,)
        Its posterior probability.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.posteriors import iter_detections
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, n_measurements=2,
    ...                             random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> model = build_patch_model(coef, density_to_shift_probabilities(0.04, 5),
    ...                           truth.noise_variance, space)
    >>> [(i, bool(np.all(patch // 400 == i))) for i, patch, _, _ in
    ...  iter_detections(PatchData(list(X), 5), model)]
    [(0, True), (1, True)]
    """
    chunk, ranges, per_range = _kernel(data, model, None, chunk, working_memory,
                                       tasks_per_block)
    if data.distributed:
        parts = data.iter_blocks(_block_detections, data.image_size, model, chunk,
                                 tasks_per_block)
        for i, (patch, best, best_p) in enumerate(parts):
            yield i, patch + int(data.offsets[i]), best, best_p
        return
    parts = ordered_map(lambda i, a, b: per_range(data, model, a, b, chunk), ranges, n_jobs)
    current, kept = 0, []
    for (i, a, _), part in zip(ranges, parts):
        if i != current:
            yield (current, *(np.concatenate([k[j] for k in kept]) for j in range(3)))
            current, kept = i, []
        kept.append(_detections_of(a, part))
    yield (current, *(np.concatenate([k[j] for k in kept]) for j in range(3)))
