"""Progress bars for long fits, on ``tqdm``.

``with ProgressBar(): est.fit(X)`` shows one bar per start (and per phase
of a start: a white-noise phase, the one-image phase of a mixture, a level
of refinement) over its iterations, up to ``max_iter``; a start that
converges early ends its bar there.  As ``tqdm`` does by default, nothing
is shown when the output is not a terminal (``disable=None``), so logs and
CI output stay clean; the estimator's ``verbose`` lines are independent of
it.  The pattern is Dask's ``with ProgressBar(): ...``: the context manager
turns the bars on for the code inside it, in this thread, and costs nothing
outside it.  On a Dask cluster a second bar counts the micrographs' E-step
tasks of each iteration as the workers finish them.
"""

import sys
import threading

__all__ = ["ProgressBar"]

_local = threading.local()


def _active():
    return getattr(_local, "bar", None)


class ProgressBar:
    """Show the iterations of every fit inside the ``with`` block as progress bars.

    Parameters
    ----------
    file : file-like, default=None
        Where the bars are written; ``None``: ``sys.stderr``.
    disable : bool or None, default=None
        ``None`` (``tqdm``'s rule): shown only when ``file`` is a terminal.
        ``False`` shows them anyway, ``True`` never.

    Examples
    --------
    >>> import io
    >>> from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_target
    >>> from mtdlearn.progress import ProgressBar
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> X, _ = make_measurement(make_target(basis, random_state=0), basis, 200, snr=10,
    ...                         random_state=0)
    >>> out = io.StringIO()
    >>> with ProgressBar(file=out, disable=False):
    ...     em = ApproxEMEstimator(5, basis=basis, random_state=0).fit(X)
    >>> "ApproxEM" in out.getvalue() and "it" in out.getvalue()
    True
    """

    def __init__(self, *, file=None, disable=None):
        self.file = file
        self.disable = disable
        self._bar = None

    def __enter__(self):
        from tqdm.auto import tqdm  # noqa: F401  (fail at once if missing)

        self._previous = _active()
        _local.bar = self
        return self

    def __exit__(self, *exc):
        self._close()
        _local.bar = self._previous
        return False

    # -- the hooks the fitting loop calls --------------------------------
    def _start(self, name, total, initial=0):
        from tqdm import tqdm

        self._close()
        self._bar = tqdm(total=total, initial=initial, desc=name, unit="it", leave=True,
                         file=self.file if self.file is not None else sys.stderr,
                         disable=self.disable, dynamic_ncols=True)

    def _update(self, n_iter, gain):
        if self._bar is not None:
            self._bar.update(n_iter - self._bar.n)
            if gain == gain and abs(gain) != float("inf"):
                self._bar.set_postfix_str(f"gain {gain:.2e}", refresh=False)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _blocks(self, total):
        from tqdm import tqdm

        return tqdm(total=total, desc="blocks", unit="micrograph", leave=False,
                    position=1, file=self.file if self.file is not None else sys.stderr,
                    disable=self.disable, dynamic_ncols=True)


def start(name, total, initial=0):
    """Open a bar for a start of ``total`` iterations, if a ProgressBar is active."""
    bar = _active()
    if bar is not None:
        bar._start(name, total, initial)


def update(n_iter, gain):
    """Move the active bar to iteration ``n_iter`` (no-op without a ProgressBar)."""
    bar = _active()
    if bar is not None:
        bar._update(n_iter, gain)


def blocks(total):
    """A bar over ``total`` blocks (micrographs on a cluster), or None without a ProgressBar.

    The caller updates it as each block's task completes and closes it.
    """
    bar = _active()
    return None if bar is None else bar._blocks(total)


def close():
    """End the active bar (no-op without a ProgressBar)."""
    bar = _active()
    if bar is not None:
        bar._close()
