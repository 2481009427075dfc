"""The CTF-aware fit's error against its box: how much room the CTF's spread needs.

A CTF spreads a copy beyond the particle (about ``lambda df k`` Angstrom at
frequency ``k``: :meth:`~mtdlearn.imaging.ctf.CTF.delocalization`), and the
model holds what falls inside its ``B x B`` box.  The particle is fixed: a
:func:`~mtdlearn.make_particle` target of the L = 11 basis (Gaussian atoms in
a ball of 7 pixels, support ~11 pixels), simulated *in each box's basis* (its
11 x 11 image centred in the B x B box) so that the copies are >= 2B - 1
apart as the model assumes, in four micrographs (defocus 0.8, 1.2, 1.6 and
2.0 um, 300 kV, 3 A/px, 4x colored noise) whose side grows with B so that
the number of copies stays the same.  Each case fits
``ApproxEMEstimator(B, particle_diameter=d, ctf=..., noise="colored")`` and
reports the image error after rotation and translation against the particle,
in the fit's basis (``floor``: the particle's own error in it).

Usage::

    python benchmarks/bench_box_size.py SNR SEED B:d,B:d,...
    python benchmarks/bench_box_size.py 20 0 11:none,13:11,15:11,17:11
"""
import sys, time, json, warnings
from mtdlearn import ApproxEMEstimator, FourierBesselBasis, make_measurement, make_particle, relative_error
from mtdlearn.imaging.ctf import CTF
from mtdlearn.imaging.noise import make_noise_psd
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from bench_microscope import truth_in  # noqa: E402

if len(sys.argv) != 4:
    sys.exit(__doc__)
snr = float(sys.argv[1]); seed = int(sys.argv[2])
cases = [(int(b), None if d == "none" else float(d)) for b, d in (c.split(":") for c in sys.argv[3].split(","))]
image = FourierBesselBasis(11).evaluate(make_particle(FourierBesselBasis(11), random_state=seed))
ctfs = [CTF(float(df), pixel_size=3.0) for df in (8000, 12000, 16000, 20000)]
for B, d in cases:
    basis = FourierBesselBasis(B)
    coef, _ = truth_in(basis, image)
    size = int(round(512 * B / 11))
    X, truth = make_measurement(coef, basis, size, density=0.08, snr=snr, n_measurements=4,
                                random_state=seed, ctf=ctfs, noise_psd=make_noise_psd(4.0))
    est = ApproxEMEstimator(B, particle_diameter=d, ctf=ctfs, noise="colored", random_state=seed, n_jobs=1)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est.fit(X)
    t = time.perf_counter() - t0
    ref, floor = truth_in(est.basis_, image)
    err = relative_error(ref, est.coef_, est.basis_, align="rotation+translation")
    print(json.dumps(dict(B=B, d=d, snr=snr, seed=seed, copies=truth.n_copies, p=est.basis_.n_functions,
          err=round(err, 4), floor=round(floor, 4), time=round(t, 1), e_steps=est.n_e_steps_,
          conv=est.converged_, white_it=getattr(est, "white_noise_n_iter_", None),
          warn=[str(x.message)[:60] for x in w])), flush=True)
