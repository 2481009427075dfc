"""
Error and running time against the number of rotations K (the paper's Fig. 4)
=============================================================================

The EM searches K equispaced rotations (eq. 8) while the true rotations are
continuous.  Mean error and running time as K varies, at SNR 5, one random
start, with autocorrelation analysis (which averages over all rotations) as a
horizontal line.  The paper uses 1500 x 1500 measurements and 40 trials; the
default here is 600 x 600 and 4 trials (``MTDLEARN_FULL=1`` for the paper's).
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from mtdlearn.experiments import run_trials

FULL = os.environ.get("MTDLEARN_FULL") == "1"
N, TRIALS = (1500, 40) if FULL else (600, 4)
KS = [1, 2, 4, 8, 16, 32] if FULL else [2, 4, 8, 16]

settings = [dict(seed=seed, size=N, snr=5, rotations=k, em_init="random", n_init=1)
            for k in KS for seed in range(TRIALS)]
results = run_trials(settings, n_jobs=-1)
err_em = np.array([r["error_em"] for r in results]).reshape(len(KS), TRIALS).mean(1)
t_em = np.array([r["time_em"] for r in results]).reshape(len(KS), TRIALS).mean(1)
t_it = np.array([r["time_per_iteration_em"] for r in results]).reshape(len(KS), TRIALS).mean(1)
err_ac = np.mean([r["error_ac"] for r in results])
t_ac = np.mean([r["time_ac"] for r in results])
for k, e, t, ti in zip(KS, err_em, t_em, t_it):
    print(f"K {k:>3}: EM error {e:.4f}, time {t:.2f} s, per iteration {ti:.4f} s")
print(f"fitted slope of the time per iteration in K: "
      f"{np.polyfit(np.log(KS), np.log(t_it), 1)[0]:.2f} (reference 1)")
print(f"autocorrelation analysis: error {err_ac:.4f}, time {t_ac:.2f} s")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax1.semilogy(KS, err_em, "o-", color="tab:blue", label="approximate EM")
ax1.axhline(err_ac, color="tab:red", ls="--", label="autocorrelation analysis")
ax1.set_xscale("log", base=2)
ax1.set_xlabel("K (rotations searched)")
ax1.set_ylabel("mean relative error")
ax1.legend()
ax2.loglog(KS, t_em, "o-", color="tab:blue", label="approximate EM")
ax2.axhline(t_ac, color="tab:red", ls="--", label="autocorrelation analysis")
ax2.loglog(KS, t_it, "o:", color="tab:cyan", label="EM, per iteration")
ax2.loglog(KS, t_it[-1] * np.array(KS) / KS[-1], "k:", label="slope 1")
ax2.set_xscale("log", base=2)
ax2.set_xlabel("K (rotations searched)")
ax2.set_ylabel("mean running time [s]")
ax2.legend()
os.makedirs("out", exist_ok=True)
fig.savefig(os.path.join("out", "error_vs_rotations.png"), dpi=120)
plt.show()
