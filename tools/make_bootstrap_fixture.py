"""Fixture for the batch summary's confidence interval (analysis::bootstrap_mean_ci):
the 95% percentile bootstrap of the mean, computed here with numpy, independently of
glimpse's C++ (only the resampling stream is shared by definition: splitmix64, as
glimpse::rng, index floor(u64 * n / 2^64)).

Writes tests/data/bootstrap_ci.json: per case the sample `x`, `resamples`, `seed`, and the
expected `mean`, `lo` (2.5% quantile of the resampled means) and `hi` (97.5%), quantiles
by numpy.quantile's default ("linear") method. Cases: samples near 1 and near 0 (masses
of a focused / a flat head, some exactly at the bound), a mid-range sample, paired
differences near -1, and n = 2.

Run: /work/venv/bin/python tools/make_bootstrap_fixture.py   (well under a second)
"""

import json
import os
import random

import numpy as np

import provenance

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "bootstrap_ci.json")
MASK = (1 << 64) - 1
SEED = 0x676C696D707365  # "glimpse": analysis::bootstrap_seed
RESAMPLES = 2000  # analysis::bootstrap_resamples


def splitmix64(seed):
    state = seed
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


def bootstrap(x, resamples=RESAMPLES, seed=SEED):
    n = len(x)
    g = splitmix64(seed)
    idx = np.array([[(next(g) * n) >> 64 for _ in range(n)] for _ in range(resamples)])
    means = np.asarray(x, dtype=np.float64)[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(np.mean(x)), float(lo), float(hi)


def main():
    rnd = random.Random(13)
    cases = {
        # A focused head: masses at or next to 1, a few images where it strays.
        "near_one": [1.0] * 6 + [1.0 - rnd.expovariate(500.0) for _ in range(3)]
        + [1.0 - rnd.expovariate(5.0) for _ in range(3)],
        # A flat head on a small box: masses at or next to 0, a few larger.
        "near_zero": [0.0] * 4 + [rnd.expovariate(1000.0) for _ in range(2)] + [rnd.expovariate(10.0) for _ in range(3)],
        "mid": [rnd.uniform(0.2, 0.8) for _ in range(40)],
        # base - fine-tuned when the fine-tuned head is focused and the base flat.
        "diff_near_minus_one": [-1.0 + rnd.expovariate(50.0) for _ in range(15)],
        "n2": [0.25, 0.75],
    }
    out = {"what": __doc__.split("\n\n")[0], "cases": []}
    for name, x in cases.items():
        x = [min(1.0, max(-1.0, v)) for v in x]
        mean, lo, hi = bootstrap(x)
        # Student's t for comparison (t_{0.975, n-1} from glimpse's table, up to 30 df).
        t975 = [0, 12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
                2.1788, 2.1604, 2.1448]
        hw = t975[len(x) - 1] * np.std(x, ddof=1) / np.sqrt(len(x)) if len(x) - 1 < len(t975) else float("nan")

        out["cases"].append(
            {"name": name, "x": x, "resamples": RESAMPLES, "seed": SEED, "mean": mean, "lo": lo, "hi": hi}
        )
        print(f"{name:22s} n={len(x):3d} mean={mean:.6f} bootstrap [{lo:.6f}, {hi:.6f}]  t [{mean - hw:.6f}, {mean + hw:.6f}]")
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    provenance.wrote(OUT)
    provenance.record()


if __name__ == "__main__":
    main()
