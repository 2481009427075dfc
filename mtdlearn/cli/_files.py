"""Helpers of the command line: argument types, one-line errors, and outputs
written safely (checked up front, written to a temporary file, then moved into
place; never replacing a file unless asked)."""

import argparse
import os
import secrets
from pathlib import Path

import numpy as np


class _CLIError(Exception):
    """An error reported as one line on stderr with a non-zero exit."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _odd_window(text):
    value = _positive_int(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd integer (a window centred on "
                                         f"each patch), got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _tolerance(text):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    if not value >= 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a finite number >= 0, got {text}")
    return value


def _check_outputs(paths, overwrite, inputs=()):
    """Refuse, before any work, outputs that would replace an input file, a
    directory, or (without ``overwrite``) an existing file."""
    inputs = {Path(p).resolve() for p in inputs}
    for path in paths:
        path = Path(path)
        if path.resolve() in inputs:
            raise _CLIError(f"{path} is an input file and would be overwritten; "
                            "choose another output")
        if path.is_dir():
            raise _CLIError(f"{path} is a directory; expected a file path")
        if path.exists() and not overwrite:
            raise _CLIError(f"{path} exists; pass --overwrite to replace it")


def _write_files(writers, overwrite):
    """Write ``{path: write(binary_file)}`` with nothing half-written.

    Every file is first written in full to a temporary file beside its
    target (``.<name>.<random>.tmp``, created with the usual permissions),
    then moved into place: ``os.replace`` with ``overwrite``, else a hard
    link that fails if the target appeared meanwhile (so an existing file is
    never replaced).  On any error the temporary files are removed.
    """
    temps = {}
    try:
        for path, write in writers.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            temps[path] = tmp
            with open(tmp, "xb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in temps.items():
            if overwrite:
                os.replace(tmp, path)
                continue
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _CLIError(f"{path} exists; pass --overwrite to replace it") from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise _CLIError(f"{path} exists; pass --overwrite to replace it") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    finally:
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()


def _npy_writer(array):
    return lambda fh: np.save(fh, array, allow_pickle=False)


def _bytes_writer(data):
    return lambda fh: fh.write(data)


def _text_writer(text):
    return _bytes_writer(text.encode("utf-8"))


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None if not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png_bytes(fig, plt):
    """Render and close ``fig``."""
    import io

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _image_png(image, title):
    """The PNG of ``image`` as bytes, or None without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    im = ax.imshow(image, cmap="viridis")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png_bytes(fig, plt)


# ---------------------------------------------------------------------------
