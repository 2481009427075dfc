"""``fit.json``'s ``model``: what ``predict --model`` needs to rebuild a fitted EM.

Written by ``mtdlearn fit`` (:func:`model_dict`), read back by ``mtdlearn
predict --model`` (:func:`estimator_from_model`).
"""

import numpy as np


def model_dict(est, noise, pixel_size, factor, original_pixel_size, background):
    """What ``predict --model`` needs to rebuild the fitted model."""
    from ..em.residual import picker_state

    return {
        "image_size": est.basis_.image_size,
        "basis": {k: v for k, v in est.basis_.get_params().items()},
        "n_coefficients": est.basis_.n_functions,
        "n_rotations": len(est.angles_),
        "coef": np.asarray(est.coef_).tolist(),
        "weights": np.asarray(est.weights_).tolist(),
        "shift_probabilities": np.asarray(est.shift_probabilities_).tolist(),
        "noise_variance": float(est.noise_variance_),
        "density": float(est.density_),
        "noise": noise,
        "pixel_size": pixel_size,
        "bin": factor,
        "original_pixel_size": original_pixel_size,
        "subtract_background": background,
        # noise="residual": the first fit's model, which picks the copies it subtracts
        "residual_picker": picker_state(est),   # None unless noise="residual"
    }


def estimator_from_model(model):
    """A fitted ``ApproxEMEstimator`` rebuilt from a model dict (``fit.json``'s ``model``).

    ``basis`` (FourierBesselBasis parameters), ``n_rotations``, ``coef``,
    ``shift_probabilities`` and ``noise_variance``; ``weights`` and
    ``noise`` when given (default: one image, white noise), and with
    ``noise="residual"`` the first fit's parameters (``residual_picker``).
    """
    from ..basis.fourier_bessel import FourierBesselBasis
    from ..basis.rotations import check_rotation_grid
    from ..em.estimator import ApproxEMEstimator
    from ..em.residual import set_picker_state
    from ..imaging.shifts import shift_probabilities_to_density

    basis = FourierBesselBasis(**model["basis"])
    coef = np.asarray(model["coef"], dtype=np.float64)
    weights = np.asarray(model.get("weights", [1.0]), dtype=np.float64)
    est = ApproxEMEstimator(basis.image_size, basis=basis, rotations=int(model["n_rotations"]),
                            noise=model.get("noise", "white"), n_components=len(weights)
                            if coef.ndim == 2 else 1)
    est.basis_ = basis
    est.rotations_, est.angles_ = check_rotation_grid(int(model["n_rotations"]))
    est.coef_ = coef
    est.weights_ = weights
    est.shift_probabilities_ = np.asarray(model["shift_probabilities"], dtype=np.float64)
    est.noise_variance_ = float(model["noise_variance"])
    est.density_ = shift_probabilities_to_density(est.shift_probabilities_)
    set_picker_state(est, model.get("residual_picker"))
    return est
