"""Checkpoints of long fits: save the state after every iteration, resume later.

``fit(X, checkpoint=path)`` (see :meth:`mtdlearn.BaseMTDEstimator.fit`)
writes a :class:`FitCheckpoint` to ``path`` after every iteration of every
start and when the fit ends.  Given the same path again, with the same data
and settings, ``fit`` resumes where the file left off, and the result is
bit-identical to that of an uninterrupted fit: the loop is deterministic given
its state, so the checkpoint needs only the parameters, the iteration count,
the log-likelihood history and the seeds of the starts.  A checkpoint written
for other measurements or other settings is refused.

The file is one ``.npz`` archive (a zip file readable by :func:`numpy.load`)
holding the arrays and a ``meta.json`` member with everything else: no
pickle, so loading a checkpoint runs no code.  It is written to a temporary
file in the same directory, flushed to disk, then moved over ``path`` with
:func:`os.replace`, so a fit killed at any moment leaves the previous
checkpoint or the new one, never a torn file.

The fingerprints are SHA-256 digests: of the measurements (their shapes,
dtypes and every byte, read in blocks of rows; each measurement on its own,
on the worker that holds it when the input is a Dask array), and of the
estimator's class and parameters, except ``n_jobs`` and ``verbose`` which do
not change results (computed in ``mtdlearn.data._hashing``, re-exported here).
"""

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .data._hashing import hash_measurements, hash_params
from .initializers import InitialState

__all__ = ["FitCheckpoint", "StartRecord", "check_checkpoint_path", "hash_measurements",
           "hash_params", "run_checkpointed"]

#: Version of the file layout; bumped when it changes incompatibly (2: the data
#: fingerprint is the digest of the measurements' digests).
FORMAT_VERSION = 2


@dataclasses.dataclass
class StartRecord:
    """The state of one start, finished or running.

    Parameters
    ----------
    coef : ndarray of shape (p,)
        Coefficients after ``n_iter`` iterations.
    shift_probabilities : ndarray of shape (2L, 2L)
        Shift distribution ``rho`` after ``n_iter`` iterations.
    noise_variance : float
        ``sigma**2`` after ``n_iter`` iterations.
    n_iter : int
        Iterations done.
    history : list of float
        The objective at the start and after each iteration (the EM's mean
        log-likelihood per patch); empty for a fit without a loop.
    objective : float
        The final objective (higher is better).
    converged : bool
        Whether the start met its tolerance.
    run : dict, default=None
        What the estimator keeps beside the parameters (numbers only, e.g.
        the precision and step bound of an accelerated EM); ``None`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.checkpoint import StartRecord
    >>> record = StartRecord(np.zeros(3), np.full((6, 6), 1 / 36), 1.0, 2, [-3.0, -2.5, -2.4],
    ...                      -2.4, False)
    >>> record.n_iter
    2
    """

    coef: np.ndarray
    shift_probabilities: np.ndarray
    noise_variance: float
    n_iter: int
    history: list
    objective: float
    converged: bool
    run: dict = None

    def _meta(self):
        return {"noise_variance": float(self.noise_variance), "n_iter": int(self.n_iter),
                "history": [float(v) for v in self.history],
                "objective": float(self.objective), "converged": bool(self.converged),
                "run": dict(self.run or {})}


class FitCheckpoint:
    """The saved state of a fit: finished starts, the running one, fingerprints.

    Written by :meth:`mtdlearn.BaseMTDEstimator.fit` when given
    ``checkpoint=path``; read back by the same call to resume.  The starts
    run one after another; ``starts`` holds those that finished and
    ``current`` the one running (its index is ``len(starts)``).

    Parameters
    ----------
    estimator : str
        Class name of the estimator that wrote it.
    params_hash : str
        :func:`hash_params` of that estimator (and of a warm start's state).
    data_hash : str
        :func:`hash_measurements` of the measurements it was fitting.
    seeds : list of int
        The seeds of all starts, drawn up front from ``random_state``.
    n_patches : int
        Number of patches of the measurements.
    starts : list of StartRecord, default=()
        The finished starts, in order.
    current : StartRecord, default=None
        The running start after its last completed iteration, or ``None``.

    Attributes
    ----------
    complete : bool
        Whether every start has finished (a fit given this file returns at once).
    n_iter : int
        Iterations done by the running start (or by the last finished one).

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement
    >>> from mtdlearn import make_target
    >>> from mtdlearn.checkpoint import FitCheckpoint
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
    ...                             snr=10, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200, random_state=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "fit.npz")
    ...     em = em.fit(X, checkpoint=path)       # writes after every iteration
    ...     ckpt = FitCheckpoint.load(path)
    ...     again = em.fit(X, checkpoint=path)    # complete: returns at once
    >>> ckpt.complete, ckpt.n_iter == em.n_iter_
    (True, True)
    """

    def __init__(self, estimator, params_hash, data_hash, seeds, n_patches, starts=(),
                 current=None):
        self.estimator = estimator
        self.params_hash = params_hash
        self.data_hash = data_hash
        self.seeds = [int(s) for s in seeds]
        self.n_patches = int(n_patches)
        self.starts = list(starts)
        self.current = current

    @property
    def complete(self):
        """Whether every start has finished."""
        return len(self.starts) == len(self.seeds)

    @property
    def n_iter(self):
        """Iterations done by the running start, or by the last finished one."""
        if self.current is not None:
            return self.current.n_iter
        return self.starts[-1].n_iter if self.starts else 0

    # -- file format ---------------------------------------------------------
    def save(self, path):
        """Write the checkpoint to ``path`` atomically.

        The archive is written to a temporary file beside ``path``, flushed
        to disk, then renamed over ``path`` (:func:`os.replace`).

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ending in ``.npz``); its
            directory must exist.

        Returns
        -------
        path : pathlib.Path
            The file written.

        Examples
        --------
        >>> import os
        >>> import tempfile
        >>> import numpy as np
        >>> from mtdlearn.checkpoint import FitCheckpoint
        >>> ckpt = FitCheckpoint("ApproxEMEstimator", "p" * 64, "d" * 64, [7, 8], 100)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = ckpt.save(os.path.join(tmp, "fit.npz"))
        ...     FitCheckpoint.load(path).seeds
        [7, 8]
        """
        path = Path(path)
        records = list(self.starts) + ([self.current] if self.current is not None else [])
        meta = {
            "format": "mtdlearn.FitCheckpoint", "version": FORMAT_VERSION,
            "estimator": self.estimator, "params_hash": self.params_hash,
            "data_hash": self.data_hash, "seeds": self.seeds, "n_patches": self.n_patches,
            "n_finished": len(self.starts), "running": self.current is not None,
            "records": [r._meta() for r in records],
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("meta.json", json.dumps(meta, indent=1, allow_nan=False))
                for i, r in enumerate(records):
                    for name in ("coef", "shift_probabilities"):
                        buf = io.BytesIO()
                        np.lib.format.write_array(buf, np.asarray(getattr(r, name),
                                                                  dtype=np.float64),
                                                  allow_pickle=False)
                        zf.writestr(f"{name}_{i}.npy", buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path):
        """Read a checkpoint written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The checkpoint file.

        Returns
        -------
        checkpoint : FitCheckpoint
            Its content.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If ``path`` is not a checkpoint of this version of mtdlearn.

        Examples
        --------
        >>> import os
        >>> import tempfile
        >>> from mtdlearn.checkpoint import FitCheckpoint
        >>> ckpt = FitCheckpoint("ApproxEMEstimator", "p" * 64, "d" * 64, [7], 100)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     loaded = FitCheckpoint.load(ckpt.save(os.path.join(tmp, "fit.npz")))
        >>> loaded.complete, loaded.current is None
        (False, True)
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(npz["meta.json"])
                if meta.get("format") != "mtdlearn.FitCheckpoint":
                    raise ValueError("no mtdlearn.FitCheckpoint metadata")
                if meta.get("version") != FORMAT_VERSION:
                    raise ValueError(f"format version {meta.get('version')}, this mtdlearn "
                                     f"reads version {FORMAT_VERSION}")
                records = [StartRecord(npz[f"coef_{i}.npy"], npz[f"shift_probabilities_{i}.npy"],
                                       **m) for i, m in enumerate(meta["records"])]
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"checkpoint {path} is not a readable mtdlearn checkpoint "
                             f"({exc})") from None
        n_finished = meta["n_finished"]
        return cls(meta["estimator"], meta["params_hash"], meta["data_hash"], meta["seeds"],
                   meta["n_patches"], starts=records[:n_finished],
                   current=records[n_finished] if meta["running"] else None)

    def check(self, estimator, params_hash, data_hash, path=None):
        """Refuse a checkpoint written by another estimator, settings or data.

        Parameters
        ----------
        estimator : str
            Class name of the estimator that is fitting.
        params_hash : str
            Its :func:`hash_params`.
        data_hash : str
            :func:`hash_measurements` of the measurements it is fitting.
        path : str or path-like, default=None
            Named in the error message.

        Returns
        -------
        checkpoint : FitCheckpoint
            ``self``, when it matches.

        Raises
        ------
        ValueError
            If anything differs; the message says what.

        Examples
        --------
        >>> from mtdlearn.checkpoint import FitCheckpoint
        >>> ckpt = FitCheckpoint("ApproxEMEstimator", "p" * 64, "d" * 64, [7], 100)
        >>> ckpt.check("ApproxEMEstimator", "p" * 64, "e" * 64)
        Traceback (most recent call last):
        ...
        ValueError: the checkpoint was written by a fit on other measurements ...
        """
        label = "the checkpoint" if path is None else f"checkpoint {path}"
        advice = ("; delete it or give another checkpoint path to start a new fit")
        if estimator != self.estimator:
            raise ValueError(f"{label} was written by {self.estimator}, not by "
                             f"{estimator}" + advice)
        if data_hash != self.data_hash:
            raise ValueError(f"{label} was written by a fit on other measurements "
                             f"(sha256 {self.data_hash[:12]}..., these are "
                             f"{data_hash[:12]}...)" + advice)
        if params_hash != self.params_hash:
            raise ValueError(f"{label} was written by a fit with other settings "
                             "(the estimator's parameters, other than n_jobs and verbose, "
                             "or the state a warm start continues from, differ)" + advice)
        return self

    def restore(self, estimator):
        """Set ``estimator``'s fitted attributes from the checkpoint.

        The record of highest objective among the finished starts and the
        running one is taken (for a complete checkpoint, the start ``fit``
        chose).  The estimator can then ``score``, ``predict`` and
        ``sample``, or continue the fit with ``warm_start=True`` (on another
        machine, say, or with more iterations: then the settings may
        differ; only the estimator's class and the shapes are checked, the
        data are not at hand).

        Parameters
        ----------
        estimator : BaseMTDEstimator
            An estimator of the class that wrote the checkpoint, with a
            compatible basis; modified in place.

        Returns
        -------
        estimator : BaseMTDEstimator
            The same estimator, now fitted.

        Raises
        ------
        ValueError
            If the checkpoint was written by another class of estimator, or
            holds no completed iteration yet.

        Examples
        --------
        >>> import os
        >>> import tempfile
        >>> import numpy as np
        >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement
        >>> from mtdlearn import make_target
        >>> from mtdlearn.checkpoint import FitCheckpoint
        >>> basis = FourierBesselBasis(5, n_coefficients=10)
        >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
        ...                             snr=10, random_state=0)
        >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200, random_state=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "fit.npz")
        ...     em = em.fit(X, checkpoint=path)
        ...     restored = FitCheckpoint.load(path).restore(
        ...         ApproxEMEstimator(5, basis=basis, rotations=4, warm_start=True))
        >>> np.array_equal(restored.coef_, em.coef_)
        True
        >>> restored = restored.fit(X)  # continues from there
        """
        name = type(estimator).__name__
        if name != self.estimator:
            raise ValueError(f"the checkpoint was written by {self.estimator}, cannot restore "
                             f"it into {name}")
        records = list(self.starts) + ([self.current] if self.current is not None else [])
        if not records:
            raise ValueError("the checkpoint holds no completed iteration yet")
        record = max(records, key=lambda r: r.objective)
        estimator._validate_params()
        state = estimator._check_state(InitialState(
            np.array(record.coef), np.array(record.shift_probabilities),
            record.noise_variance, _weights(record)), source="the checkpoint")
        estimator._set_fitted({
            "coef": state.coef, "shift_probabilities": state.shift_probabilities,
            "noise_variance": state.noise_variance, "weights": state.weights,
            "n_iter": record.n_iter,
            "converged": record.converged,
            "extra": estimator._start_extra(None, record.objective, record.history)},
            self.n_patches)
        return estimator


def _weights(record):
    """The abundances of a mixture's start, kept in its ``run`` (``None``: one image)."""
    weights = (record.run or {}).get("weights")
    return None if weights is None else np.asarray(weights, dtype=np.float64)


def check_checkpoint_path(checkpoint):
    """Validate the ``checkpoint`` argument of ``fit``: a file path in an existing directory.

    Parameters
    ----------
    checkpoint : str or path-like
        The path.

    Returns
    -------
    path : pathlib.Path
        The path.

    Raises
    ------
    TypeError
        If it is not a path.
    FileNotFoundError
        If its directory does not exist.
    ValueError
        If it is a directory.

    Examples
    --------
    >>> from mtdlearn.checkpoint import check_checkpoint_path
    >>> check_checkpoint_path("fit.npz").name
    'fit.npz'
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path (str or path-like), got "
                        f"{type(checkpoint).__name__}")
    path = Path(checkpoint)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"checkpoint {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory; give a file path")
    return path


def run_checkpointed(estimator, path, params_hash, data, prepared, seeds, first_state):
    """Run an estimator's starts one after another, checkpointing every iteration.

    The engine of ``fit(X, checkpoint=path)``: it loads ``path`` if it
    exists (refusing another estimator's, data's or settings'), takes the
    finished starts' results from it, resumes the running start from its
    saved state (exactly: the state is not renormalized as a start's is),
    runs the remaining starts, and saves after every iteration
    (``estimator._run_start``'s callback) and after every start.

    Parameters
    ----------
    estimator : BaseMTDEstimator
        The estimator being fitted (its ``_run_start`` and ``_start_extra``
        hooks are used).
    path : pathlib.Path
        The checkpoint file (:func:`check_checkpoint_path`).
    params_hash : str
        :func:`hash_params` of the estimator (and of a warm start's state).
    data : PatchData
        The measurements.
    prepared : object
        What the estimator's starts share (its ``_prepare(data)``).
    seeds : ndarray of int
        The seeds of the starts, used when the file does not exist yet.
    first_state : callable
        ``first_state(seed)``: the initial state of a start.

    Returns
    -------
    results : list of dict
        Each start's result, as ``_run_start`` returns it.

    Examples
    --------
    >>> import os
    >>> import tempfile
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement
    >>> from mtdlearn import make_target
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, truth = make_measurement(make_target(basis, random_state=0), basis, 150,
    ...                             snr=10, random_state=0)
    >>> em = ApproxEMEstimator(5, basis=basis, rotations=4, max_iter=200, random_state=0)
    >>> with tempfile.TemporaryDirectory() as tmp:  # fit calls run_checkpointed
    ...     em = em.fit(X, checkpoint=os.path.join(tmp, "fit.npz"))
    """
    name = type(estimator).__name__
    data_hash = data.memoize(hash_measurements)
    if path.exists():
        ckpt = FitCheckpoint.load(path).check(name, params_hash, data_hash, path)
    else:
        ckpt = FitCheckpoint(name, params_hash, data_hash, seeds, data.n_patches)

    def result(record):
        return {"coef": record.coef, "shift_probabilities": record.shift_probabilities,
                "noise_variance": record.noise_variance, "weights": _weights(record),
                "objective": record.objective,
                "n_iter": record.n_iter, "converged": record.converged,
                "history": list(record.history),
                "extra": estimator._start_extra(prepared, record.objective, record.history)}

    def save_progress(state, n_iter, history, converged):
        ckpt.current = StartRecord(state.coef, state.shift_probabilities, state.noise_variance,
                                   n_iter, list(history), history[-1], converged,
                                   estimator._checkpoint_state(state))
        ckpt.save(path)

    results = [result(record) for record in ckpt.starts]
    basis = estimator.basis_
    L = basis.image_size
    for seed in ckpt.seeds[len(ckpt.starts):]:
        if ckpt.current is not None:  # resume the start the file was saved in
            record = ckpt.current
            coef = np.asarray(record.coef, dtype=np.float64)
            rho = np.asarray(record.shift_probabilities, dtype=np.float64)
            shapes = estimator._coef_shapes()
            if coef.shape not in shapes or rho.size != 4 * L * L:
                raise ValueError(f"checkpoint {path} holds coef of shape {coef.shape} and "
                                 f"shift_probabilities of shape {rho.shape}, expected "
                                 f"{' or '.join(map(str, shapes))} and ({2 * L}, {2 * L})")
            state = estimator._resume_state(
                InitialState(coef, rho, float(record.noise_variance), _weights(record)),
                record.run or {})
            resume = (record.n_iter, record.history, record.converged)
        else:
            state, resume = first_state(seed), None
        res = estimator._run_start(prepared, state, seed, estimator.n_jobs, resume=resume,
                                   callback=save_progress)
        weights = res.get("weights")
        ckpt.starts.append(StartRecord(
            res["coef"], res["shift_probabilities"], res["noise_variance"], res["n_iter"],
            res["history"], res["objective"], res["converged"],
            None if weights is None else {"weights": [float(w) for w in weights]}))
        ckpt.current = None
        ckpt.save(path)
        results.append(res)
    return results
