"""
Error and running time against measurement size (the paper's Fig. 3)
====================================================================

Mean error of both methods and their running times as the measurement grows,
at SNR 5, with the reference slopes the paper draws: error ~ (N^2)^(-1/2)
(law of large numbers) and time ~ N^2 (the number of patches).  The paper
uses five random starts and 40 trials for N up to 10000; the default here
uses two starts, 4 trials and N up to 800
(``MTDLEARN_FULL=1`` for the paper's settings).
"""

import os

import matplotlib.pyplot as plt
import numpy as np

from mtdlearn.experiments import run_trials

FULL = os.environ.get("MTDLEARN_FULL") == "1"
if FULL:
    SIZES, TRIALS, K, N_INIT = [1000, 2000, 4000, 7000, 10000], 40, 16, 5
else:
    SIZES, TRIALS, K, N_INIT = [200, 400, 800], 4, 16, 2

settings = [dict(seed=seed, size=n, snr=5, rotations=K, em_init="random", n_init=N_INIT)
            for n in SIZES for seed in range(TRIALS)]
results = run_trials(settings, n_jobs=-1)


def mean(key):
    return np.array([r[key] for r in results]).reshape(len(SIZES), TRIALS).mean(1)


err_ac, err_em, t_ac, t_em = mean("error_ac"), mean("error_em"), mean("time_ac"), mean("time_em")
t_it = mean("time_per_iteration_em")
area = np.array(SIZES, dtype=float) ** 2
for n, a, e, ta, te in zip(SIZES, err_ac, err_em, t_ac, t_em):
    print(f"N {n:>6}: error AC {a:.4f} EM {e:.4f}   time AC {ta:.2f} s EM {te:.2f} s")
slope = np.polyfit(np.log(area), np.log(err_em), 1)[0]
tslope = np.polyfit(np.log(area), np.log(t_em), 1)[0]
islope = np.polyfit(np.log(area), np.log(t_it), 1)[0]
print(f"fitted slopes in N^2: EM error {slope:.2f} (reference -1/2), EM time {tslope:.2f}, "
      f"EM time per iteration {islope:.2f} (reference 1; the number of iterations varies "
      "from trial to trial, and small sizes carry fixed costs)")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax1.loglog(area, err_ac, "s--", color="tab:red", label="autocorrelation analysis")
ax1.loglog(area, err_em, "o-", color="tab:blue", label=f"approximate EM (K = {K})")
ax1.loglog(area, err_em[0] * (area / area[0]) ** -0.5, "k:", label="slope -1/2")
ax1.set_xlabel("measurement size $N^2$")
ax1.set_ylabel("mean relative error")
ax1.legend()
ax2.loglog(area, t_ac, "s--", color="tab:red", label="autocorrelation analysis")
ax2.loglog(area, t_em, "o-", color="tab:blue", label="approximate EM")
ax2.loglog(area, t_it, "o:", color="tab:cyan", label="EM, per iteration")
ax2.loglog(area, t_it[-1] * area / area[-1], "k:", label="slope 1")
ax2.set_xlabel("measurement size $N^2$")
ax2.set_ylabel("mean running time [s]")
ax2.legend()
os.makedirs("out", exist_ok=True)
fig.savefig(os.path.join("out", "error_vs_size.png"), dpi=120)
plt.show()
