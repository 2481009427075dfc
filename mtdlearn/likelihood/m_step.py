"""The M-step: the next parameters from the E-step's statistics (eq. 16, 18).

The coefficients solve each component's normal equations
``(sum_h W_h A_h^T A_h) alpha = sum_h A_h^T S_h``, with ``A_h`` the map from
coefficients to the formed, rotated, shifted template (through the
hypotheses' image formation, :mod:`mtdlearn.imaging.formation`); the shift
distribution and the noise variance have closed forms.
"""

import numpy as np
import scipy.linalg

from .statistics import GroupStatistics

__all__ = ["CTF_RCOND", "component_weights", "m_step", "solve_gram", "noise_variance_floor"]


def noise_variance_floor(mean_square):
    """The smallest noise variance the model is given: ``1e-12`` of the mean square pixel.

    The likelihood grows without bound as ``sigma**2 -> 0`` on data the
    model fits exactly (noise-free measurements), and ``1 / sigma**2``
    overflows; both estimators keep their estimate of ``sigma**2`` above
    this negligible fraction of the data's energy.

    Parameters
    ----------
    mean_square : float
        Mean squared pixel value of the data (``a2[0, 0]``, or the patches'
        energy per pixel).

    Returns
    -------
    floor : float
        ``1e-12 * max(mean_square, 1e-300)``.

    Examples
    --------
    >>> from mtdlearn.likelihood.m_step import noise_variance_floor
    >>> noise_variance_floor(2.0)
    2e-12
    """
    return 1e-12 * max(float(mean_square), 1e-300)


#: Through CTFs, the M-step solves for the CTF-free image only where the
#: micrographs' formations pass it: in the eigenspace of the normal
#: equations' eigenvalues above this fraction of the largest, keeping the
#: previous image elsewhere (:func:`solve_gram`).
#: Maximum likelihood amplifies the noise without bound along the
#: directions the CTFs pass weakly or not at all (their zeros).  Measured
#: (benchmarks/bench_microscope.py's data: L = 21, two micrographs of 512**2
#: at 0.8 and 2.0 um, seed 0, SNR 10; error after rotation and translation):
#: with particle_diameter=16, 0.054 / 0.057 / 0.054 at 1e-4 / 1e-3 / 1e-2
#: (the basis's floor 0.033); with the box's whole disk, degenerate at 0
#: (an exploded image) and 0.074 at 1e-3.  A Gaussian prior on the
#: coefficients instead (tau**2 the start's mean square coefficient) gave
#: 0.056 and 0.049 (SNR 100; 0.050 here) with the diameter, but 2.09 on the
#: whole disk.
CTF_RCOND = 1e-3

#: The M-step forms ``sum_k BR_k^T diag(D_k) BR_k`` over blocks of
#: rotations whose weighted copy of ``BR`` stays within this many bytes.
#: The table ``BR`` is ``K L**2 p`` floats: at L = 41 and K = 64 (the last
#: grid of ``refinement="auto"``) 908 MB, and one weighted copy of all of
#: it took a K = 64 iteration's peak to 2.2 GB (measured, N = 1025).  Up to
#: this size (every L <= 21 at K <= 32) there is one block, as before.
_GRAM_BLOCK_BYTES = 64 * 2**20


def _weighted_gram(BR, D):
    """``sum_k BR[k].T @ diag(D[k]) @ BR[k]`` (p, p), in blocks of rotations."""
    K, d, p = BR.shape
    step = max(1, _GRAM_BLOCK_BYTES // (d * p * BR.itemsize))
    # one GEMM per block (a 3-operand einsum loops: 55 s at L = 41); with one
    # block, 0 + G is G exactly
    A = np.zeros((p, p))
    for k0 in range(0, K, step):
        B = BR[k0:k0 + step]
        A += (B * D[k0:k0 + step, :, None]).reshape(-1, p).T @ B.reshape(-1, p)
    return A


def solve_gram(A, b, previous=None, rcond=None):
    """Solve the M-step's normal equations ``A alpha = b`` (``A`` positive semi-definite).

    By Cholesky when ``A``'s reciprocal condition number (LAPACK's 1-norm
    estimate) is at least ``rcond``.  Below it (the patches' posteriors leave
    some combinations of the basis functions unobserved, as from a random
    start at large L on few patches), the equations are solved in the
    eigenspace of ``A``'s eigenvalues above ``rcond`` times the largest (at
    least ``10 p`` times float64's epsilon, above eigh's rounding), and
    ``previous``'s component in the others is kept (zero if ``previous`` is
    ``None``): a generalized EM step, which still does not decrease the
    M-step's objective ``2 b.alpha - alpha.A.alpha``, where the exact solution
    would amplify the rounding of ``b`` by up to ``1 / rcond``.

    Parameters
    ----------
    A : ndarray of shape (p, p)
        Symmetric positive semi-definite: ``sum_h W_h A_h^T A_h``.
    b : ndarray of shape (p,)
        The right-hand side ``sum_h A_h^T S_h``.
    previous : ndarray of shape (p,), default=None
        The coefficients before the M-step.
    rcond : float, default=None
        ``None``: ``p`` times float64's machine epsilon.  Give ``p`` times the
        epsilon of the precision the statistics were computed in.

    Returns
    -------
    alpha : ndarray of shape (p,)
        The solution, or the generalized M-step's.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn.likelihood.m_step import solve_gram
    >>> A = np.diag([2.0, 1e-20])            # the second direction is unobserved
    >>> solve_gram(A, np.array([2.0, 1e-12]), previous=np.array([0.0, 0.5])).tolist()
    [1.0, 0.5]
    """
    p = b.shape[0]
    rcond = p * np.finfo(np.float64).eps if rcond is None else rcond
    try:
        factor = scipy.linalg.cho_factor(A, lower=False)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):   # not positive definite
        factor = None
    if factor is not None:
        anorm = np.abs(A).sum(axis=0).max()
        estimate, info = scipy.linalg.lapack.dpocon(factor[0], anorm)
        if info == 0 and estimate >= rcond:
            return scipy.linalg.cho_solve(factor, b)
    w, V = scipy.linalg.eigh(A)
    # a singular A's zero eigenvalues come out up to a few p eps w_max above
    # zero (5 eps w_max measured at p = 3): cut well above that
    keep = w > max(rcond, 10 * p * np.finfo(np.float64).eps) * max(w[-1], 0.0)
    start = np.zeros(p) if previous is None else np.asarray(previous, dtype=np.float64)
    Vk = V[:, keep]
    return start + Vk @ ((Vk.T @ (b - A @ start)) / w[keep])


def m_step(stats, shift_probabilities, hypotheses, estimate_noise=True, noise_floor=0.0,
           coef=None, rcond=None, info=None):
    """Run one M-step from the sufficient statistics (eq. 16 and 18).

    Solves ``(sum_h W_h A_h^T A_h) alpha = sum_h A_h^T S_h`` where ``A_h``
    maps ``alpha`` to the template ``C T_l Z H F_{phi_k}`` (``H`` the image
    formation of the hypotheses, the identity in the paper's model), updates
    ``rho_l = sum_k W_{k,l} / N_d`` (the merged empty mass is split back over
    the empty shifts in proportion to the previous ``rho``), and, if asked,
    ``sigma**2 = sum_m sum_h w_mh ||P_m - A_h alpha||**2 / (N_d L**2)``.

    Parameters
    ----------
    stats : Statistics or GroupStatistics
        Sufficient statistics of the E-step
        (:func:`~mtdlearn.likelihood.statistics.estep_statistics`); for
        measurements seen through different formations (each micrograph's
        CTF and noise), one per group, whose normal equations add up.
    shift_probabilities : array-like of shape (2L, 2L)
        The previous ``rho`` (only its empty shifts are used, to split the
        empty mass).
    hypotheses : HypothesisSpace or sequence of HypothesisSpace
        The basis, rotation grid and layout of the E-step (it caches the
        tables ``A_h``); with :class:`GroupStatistics`, one per group, each
        with its group's formation.
    estimate_noise : bool, default=True
        Also update ``sigma**2``.
    noise_floor : float, default=0.0
        Lower bound on the updated ``sigma**2``.
    coef : ndarray of shape (p,) or (C, p), default=None
        The previous ``alpha``, kept in the directions the statistics do not
        determine (see :func:`solve_gram`).
    rcond : float, default=None
        The reciprocal condition number of the normal equations below which
        they are solved in their well-determined subspace only
        (:func:`solve_gram`).
    info : dict, default=None
        If given, ``info["normal_matrices"]`` is set to the list of each
        component's normal matrix ``A_c = sum_h W_h A_h^T A_h``: over
        ``sigma**2``, the complete-data information of ``alpha`` (the EM's
        stopping rule, :mod:`mtdlearn.em._stopping`, takes its standard
        error from it).

    Returns
    -------
    coef : ndarray of shape (p,) or (C, p)
        The updated ``alpha`` (eq. 16); one row per component when the
        hypotheses have ``C > 1`` components, each solving its own normal
        equations.
    shift_probabilities : ndarray of shape (2L, 2L)
        The updated ``rho`` (eq. 18), on the simplex.
    noise_variance : float or None
        The updated ``sigma**2``; ``None`` when ``estimate_noise`` is false.

    Examples
    --------
    >>> import numpy as np
    >>> from mtdlearn import (FourierBesselBasis, UniformRotationGrid, make_measurement,
    ...                       make_target)
    >>> from mtdlearn.imaging.shifts import density_to_shift_probabilities
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.patch_model import build_patch_model
    >>> from mtdlearn.likelihood.statistics import estep_statistics
    >>> from mtdlearn.likelihood.m_step import m_step
    >>> from mtdlearn.data.patches import PatchData
    >>> basis = FourierBesselBasis(5, n_coefficients=10)
    >>> coef = make_target(basis, random_state=0)
    >>> X, truth = make_measurement(coef, basis, 100, snr=5, random_state=0)
    >>> space = HypothesisSpace(basis, UniformRotationGrid(4).get_angles())
    >>> rho = density_to_shift_probabilities(0.04, 5)
    >>> model = build_patch_model(coef, rho, truth.noise_variance, space)
    >>> stats = estep_statistics(PatchData([X], 5), model, chunk=64)
    >>> new_coef, new_rho, new_sigma2 = m_step(stats, rho, space)
    >>> new_coef.shape, new_rho.shape, bool(abs(new_rho.sum() - 1) < 1e-12)
    ((10,), (10, 10), True)
    """
    # several groups of measurements (GroupStatistics), each through its own
    # formation: their normal equations, posterior masses and sums add up
    groups = (list(zip(stats, hypotheses, strict=True)) if isinstance(stats, GroupStatistics)
              else [(stats, hypotheses)])
    space = groups[0][1]
    L = space.image_size
    d = L * L
    K, C = space.n_rotations, space.n_components
    W_total = 0.0
    A_sum, b_sum = [0.0] * C, [0.0] * C
    for part, part_space in groups:
        W = part_space.per_rotation(part.weights)        # (C K, S)
        y = (part_space.adjoint(part.weighted_patches) if part.rotation_images is None
             else part.rotation_images)                  # (C K, d)
        D = [W[c * K:(c + 1) * K] @ part_space.visibility for c in range(C)]  # pixel weights
        if part_space.keeps_table:
            BR = part_space.rotated_evaluation           # (K, d, p), through the formation
            for c in range(C):    # each component's own normal equations
                A_sum[c] = A_sum[c] + _weighted_gram(BR, D[c])
                b_sum[c] = b_sum[c] + np.einsum("kfp,kf->p", BR, y[c * K:(c + 1) * K])
        else:   # a large table is made block by block, and never whole
            for k0, k1, BR in part_space.rotation_blocks(_GRAM_BLOCK_BYTES):
                for c in range(C):
                    A_sum[c] = A_sum[c] + _weighted_gram(BR, D[c][k0:k1])
                    b_sum[c] = b_sum[c] + np.einsum("kfp,kf->p", BR,
                                                    y[c * K + k0:c * K + k1])
        W_total = W_total + W
    W = W_total
    previous = [None] * C if coef is None else np.reshape(coef, (C, -1))
    solved = [solve_gram(A_sum[c], b_sum[c], previous[c], rcond) for c in range(C)]
    normal = list(zip(A_sum, b_sum))
    if info is not None:
        info["normal_matrices"] = A_sum
    coef = solved[0] if C == 1 else np.stack(solved)

    n = stats.n_patches
    rho_old = np.asarray(shift_probabilities, dtype=np.float64).reshape(-1)
    rho = np.zeros(4 * L * L)
    rho[space.shifts] = W.sum(axis=0) / n
    em = space.empty
    old_empty = rho_old[em].sum()
    share = rho_old[em] / old_empty if old_empty > 0 else np.full(em.size, 1.0 / em.size)
    rho[em] = sum(part.weight_empty for part, _ in groups) / n * share
    rho /= rho.sum()

    sigma2 = None
    if estimate_noise:
        resid = stats.patch_sq
        for a, (A, b) in zip(solved, normal):
            resid = resid - 2.0 * a @ b + a @ A @ a
        sigma2 = max(resid / (n * d), noise_floor)
    return coef, rho.reshape(2 * L, 2 * L), sigma2


def component_weights(stats, hypotheses):
    """The M-step of the components' abundances: each one's share of the copies.

    ``w_c = sum_{h in c} W_h / sum_{h non-empty} W_h``, the posterior mass of
    the component's hypotheses over all the non-empty mass (the shift
    distribution, shared by the components, takes the same total in
    :func:`m_step`): the maximizer of the expected complete-data
    log-likelihood under ``sum_c w_c = 1``, as a mixture's weights.

    Parameters
    ----------
    stats : Statistics or GroupStatistics
        Sufficient statistics of the E-step.
    hypotheses : HypothesisSpace or sequence of HypothesisSpace
        Their layout (one per group with :class:`GroupStatistics`).

    Returns
    -------
    weights : ndarray of shape (C,)
        On the simplex; equal when no patch holds a copy.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from mtdlearn import FourierBesselBasis
    >>> from mtdlearn.likelihood.hypotheses import HypothesisSpace
    >>> from mtdlearn.likelihood.m_step import component_weights
    >>> space = HypothesisSpace(FourierBesselBasis(5), [0.0], n_components=2)
    >>> W = np.r_[np.full(81, 1.0), np.full(81, 3.0)]   # the second kind holds 3/4
    >>> component_weights(SimpleNamespace(weights=W), space).tolist()
    [0.25, 0.75]
    """
    groups = (list(zip(stats, hypotheses, strict=True)) if isinstance(stats, GroupStatistics)
              else [(stats, hypotheses)])
    C = groups[0][1].n_components
    mass = np.zeros(C)
    for part, space in groups:
        mass += space.per_rotation(part.weights).reshape(C, -1).sum(axis=1)
    total = mass.sum()
    return mass / total if total > 0 else np.full(C, 1.0 / C)
