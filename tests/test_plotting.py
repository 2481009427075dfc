"""Tests of mtdlearn.plotting (matplotlib, Agg backend, figures always closed)."""

import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from mtdlearn import (ApproxEMEstimator, FourierBesselBasis, make_measurement,  # noqa: E402
                      make_target)
from mtdlearn.imaging.shifts import density_to_shift_probabilities  # noqa: E402
from mtdlearn.plotting import (plot_convergence, plot_images, plot_measurement,  # noqa: E402
                               plot_shift_probabilities)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

L = 5
BASIS = FourierBesselBasis(L, n_coefficients=10)
COEF = make_target(BASIS, random_state=0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def measurement():
    return make_measurement(COEF, BASIS, 120, snr=50, random_state=0)


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"expected one collection {gid!r}, got {len(found)}"
    return found[0]


def _detections(rows, cols, meas=None):
    out = np.zeros(len(rows), dtype=[("measurement", np.int64), ("row", np.int64),
                                     ("col", np.int64), ("angle", np.float64),
                                     ("probability", np.float64)])
    out["row"], out["col"] = rows, cols
    if meas is not None:
        out["measurement"] = meas
    return out


# -- plot_measurement ---------------------------------------------------------
def test_plot_measurement_returns_axes_with_truth(measurement):
    X, truth = measurement
    ax = plot_measurement(X, truth=truth)
    assert isinstance(ax, Axes)
    assert len(_collection(ax, "truth").get_paths()) == truth.n_copies
    assert not [c for c in ax.collections if c.get_gid() == "detections"]
    image = ax.get_images()[0].get_array()
    assert image.shape == X.shape


def test_plot_measurement_draws_predict_output(measurement):
    X, truth = measurement
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2 does not converge
        est = ApproxEMEstimator(L, basis=BASIS, rotations=4, max_iter=2,
                                random_state=0).fit(X)
    detections = est.predict(X)
    assert len(detections) > 0
    ax = plot_measurement(X, detections, truth)
    assert len(_collection(ax, "detections").get_paths()) == len(detections)
    assert len(_collection(ax, "truth").get_paths()) == truth.n_copies
    assert len(ax.get_legend().get_texts()) == 2


def test_plot_measurement_uses_given_axes_and_square_geometry():
    fig, ax = plt.subplots()
    X = np.zeros((30, 30))
    out = plot_measurement(X, _detections([3], [7]), image_size=L, ax=ax)
    assert out is ax
    (path,) = _collection(ax, "detections").get_paths()
    # a copy with top-left corner (row 3, col 7) covers pixel edges 6.5..11.5, 2.5..7.5
    xs, ys = path.vertices[:, 0], path.vertices[:, 1]
    assert_allclose([xs.min(), xs.max(), ys.min(), ys.max()], [6.5, 11.5, 2.5, 7.5])


def test_plot_measurement_selects_measurement_of_stack():
    X, truth = make_measurement(COEF, BASIS, 60, n_measurements=2, random_state=1)
    dets = _detections([0, 10, 20], [0, 10, 20], meas=[0, 1, 1])
    ax = plot_measurement(X, dets, truth, measurement=1)
    assert_allclose(ax.get_images()[0].get_array(), X[1])
    assert len(_collection(ax, "detections").get_paths()) == 2
    assert len(_collection(ax, "truth").get_paths()) == int(np.sum(truth.measurement == 1))
    ax = plot_measurement(X, dets, truth)  # default: measurement 0
    assert len(_collection(ax, "detections").get_paths()) == 1
    assert len(_collection(ax, "truth").get_paths()) == int(np.sum(truth.measurement == 0))


def test_plot_measurement_max_side_crops_and_filters():
    X = np.arange(40.0 * 40).reshape(40, 40)
    dets = np.array([[0, 0], [-3, 5], [18, 18], [19, 0], [30, 30]])  # (row, col) corners
    ax = plot_measurement(X, dets, image_size=L, max_side=20)
    assert ax.get_images()[0].get_array().shape == (20, 20)
    # (19, 0) and (18, 18) touch the 20 x 20 region, (-3, 5) overlaps its top edge
    assert len(_collection(ax, "detections").get_paths()) == 4
    assert ax.get_xlim() == (-0.5, 19.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(X=np.zeros(10)), "X must be"),
    (dict(X=np.zeros((2, 2, 2, 2))), "X must be"),
    (dict(X=np.full((10, 10), np.nan)), "X must contain only finite"),
    (dict(X=np.zeros((10, 10)), max_side=0), "max_side"),
    (dict(X=np.zeros((10, 10)), detections=np.zeros((2, 2), dtype=int)), "image_size"),
    (dict(X=np.zeros((10, 10)), detections=np.zeros((2, 3), dtype=int), image_size=5),
     "detections"),
    (dict(X=np.zeros((10, 10)), detections=np.zeros(2, dtype=[("row", int)]), image_size=5),
     "detections must have fields"),
    (dict(X=np.zeros((2, 10, 10)), measurement=2), "measurement"),
])
def test_plot_measurement_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_measurement(**kwargs)


def test_plot_measurement_image_size_must_match_truth(measurement):
    X, truth = measurement
    with pytest.raises(ValueError, match="image_size=7 does not match"):
        plot_measurement(X, truth=truth, image_size=7)


# -- plot_images ----------------------------------------------------------------
def _title_error(ax):
    return float(re.search(r"relative error (\S+)", ax.get_title()).group(1))


def test_plot_images_aligns_rotated_estimate():
    rotated = BASIS.rotate(COEF, 1.0)
    axes = plot_images(COEF, rotated, BASIS)
    assert axes.shape == (2,) and all(isinstance(a, Axes) for a in axes)
    assert _title_error(axes[1]) < 1e-6
    true_img = axes[0].get_images()[0].get_array()
    shown = axes[1].get_images()[0].get_array()
    # the displayed estimate is rotated back onto the truth (not by +1.0 again)
    assert_allclose(shown, true_img, atol=1e-6)
    assert_allclose(true_img, BASIS.evaluate(COEF))


def test_plot_images_several_estimates_shared_scale_and_labels():
    noisy = COEF + 0.3 * np.random.default_rng(0).standard_normal(COEF.shape)
    ests = np.stack([BASIS.rotate(COEF, 2.0), BASIS.rotate(noisy, 0.5)])
    axes = plot_images(COEF, ests, BASIS, labels=["EM", "autocorrelation"])
    assert axes.shape == (3,)
    assert axes[1].get_title().startswith("EM") and axes[2].get_title().startswith("auto")
    expected = np.linalg.norm(BASIS.to_complex(noisy) - BASIS.to_complex(COEF)) / \
        np.linalg.norm(BASIS.to_complex(COEF))
    assert _title_error(axes[2]) <= float(f"{expected:.3g}") + 1e-3
    clims = {a.get_images()[0].get_clim() for a in axes}
    assert len(clims) == 1


def test_plot_images_accepts_given_axes_and_estimators():
    class Fitted:
        coef_ = BASIS.rotate(COEF, 0.3)

    fig, axes = plt.subplots(2, 2)
    out = plot_images(COEF, [Fitted()], BASIS, axes=axes)
    assert len(out) == 2 and out[0] is axes[0, 0] and out[1] is axes[0, 1]
    assert _title_error(out[1]) < 1e-6


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(9), np.ones(10)), {}, "true_coef"),
    ((np.zeros(10), np.ones(10)), {}, "true_coef is zero"),
    ((np.ones(10), np.ones(9)), {}, r"estimates\[0\]"),
    ((np.ones(10), [np.ones(10), np.ones(10)]), dict(labels=["a"]), "labels"),
    ((np.ones(10), np.ones(10)), dict(axes=[None]), "axes"),
    ((np.ones(10), [np.ones(10), np.ones(3)]), {}, "estimates"),
])
def test_plot_images_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_images(*args, BASIS, **kwargs)


def test_plot_images_needs_a_basis():
    with pytest.raises(TypeError, match="basis"):
        plot_images(COEF, COEF, "basis")


# -- plot_convergence -----------------------------------------------------------
def test_plot_convergence_from_sequence_and_estimator(measurement):
    hist = [-60.0, -52.0, -51.5, -51.49]
    ax = plot_convergence(hist)
    assert isinstance(ax, Axes)
    assert_allclose(ax.lines[0].get_ydata(), hist)
    assert_allclose(ax.lines[0].get_xdata(), np.arange(4))

    class Fitted:
        log_likelihood_history_ = hist

    ax = plot_convergence(Fitted(), show_gain=True)
    assert len(ax.figure.axes) == 2  # the twin gain axis
    twin = ax.figure.axes[1]
    assert twin.get_yscale() == "log"
    assert_allclose(twin.lines[0].get_ydata(), np.diff(hist))


def test_plot_convergence_bad_input():
    with pytest.raises(ValueError, match="estimator_or_history"):
        plot_convergence([])
    with pytest.raises(ValueError, match="estimator_or_history"):
        plot_convergence([[1.0, 2.0]])
    with pytest.raises(ValueError, match="estimator_or_history"):
        plot_convergence([1.0, np.nan])
    with pytest.raises(ValueError, match="log_likelihood_history_"):
        plot_convergence(ApproxEMEstimator(L))


# -- plot_shift_probabilities ---------------------------------------------------
@pytest.mark.parametrize("mask_empty", [True, False])
def test_plot_shift_probabilities(mask_empty):
    rho = density_to_shift_probabilities(0.04, L)
    ax = plot_shift_probabilities(rho, mask_empty=mask_empty)
    assert isinstance(ax, Axes)
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (2 * L, 2 * L)
    assert "ell_0" in ax.get_ylabel() and "ell_1" in ax.get_xlabel()
    (cross,) = [p for p in ax.patches if p.get_gid() == "empty-shifts"]
    assert f"= {L}" in cross.get_label()
    assert len(ax.figure.axes) == 2  # the colorbar
    if mask_empty:
        assert np.ma.getmaskarray(shown)[L].all() and np.ma.getmaskarray(shown)[:, L].all()
        assert np.ma.getmaskarray(shown).sum() == 4 * L - 1
        empty_mass = 1 - 0.04 * (2 * L - 1) ** 2 / L**2
        assert f"total mass {empty_mass:.3g}" in ax.get_title()
    else:
        assert not np.ma.getmaskarray(shown).any()


def test_plot_shift_probabilities_from_estimator():
    class Fitted:
        shift_probabilities_ = density_to_shift_probabilities(0.02, 3)

    ax = plot_shift_probabilities(Fitted())
    assert ax.get_images()[0].get_array().shape == (6, 6)


@pytest.mark.parametrize("rho, match", [
    (np.ones((3, 3)) / 9, r"shape \(2L, 2L\)"),
    (np.ones((4, 6)) / 24, r"shape \(2L, 2L\)"),
    (np.ones(10), r"shape \(2L, 2L\)"),
    (-np.ones((4, 4)), "non-negative"),
])
def test_plot_shift_probabilities_bad_input(rho, match):
    with pytest.raises(ValueError, match="shift_probabilities.*" + match):
        plot_shift_probabilities(rho)


def test_import_error_message(monkeypatch):
    import builtins

    import mtdlearn.plotting as plotting

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install mtdlearn\[plot\]"):
        plotting.plot_convergence([1.0, 2.0])
