"""How often the gate's interval covers the true gain when training seeds vary (not a test).

Simulation: a test set of n rows; each training seed s gives the pretrained arm a true accuracy gain
of mu + e_s over scratch, with seed effects e_s ~ N(0, tau^2). The true gain is mu, the mean over
all possible seeds. For each draw we simulate k seeds' paired predictions and ask whether the gate's
interval (warmstart.gate.stats.paired_bootstrap: the Multi-Bootstrap over seeds and test rows) covers mu.
With tau = 0 the seeds differ only by test-set noise and the interval should cover at about its
nominal rate; with seed variance and few seeds, a bootstrap over k seeds sees (k-1)/k of their
variance and the percentile interval is narrow.

    python bench/seeds_coverage.py     # writes bench/results/seeds_coverage.json
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from machine import describe, write_result

from warmstart.gate.stats import paired_bootstrap

N, MU, SCRATCH_ACCURACY, DRAWS, RESAMPLES, CONFIDENCE = 500, 0.04, 0.75, 200, 1000, 0.90


def simulate(seeds: int, tau: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, N)
    pretrained, scratch = [], []
    for _ in range(seeds):
        gain = MU + rng.normal(0, tau)
        scratch_right = rng.random(N) < SCRATCH_ACCURACY
        # Rows scratch gets wrong that pretrained gets right (and the reverse when the gain is negative).
        flip = rng.random(N) < abs(gain) / (1 - SCRATCH_ACCURACY if gain > 0 else SCRATCH_ACCURACY)
        pretrained_right = np.where(flip & (scratch_right != (gain > 0)), ~scratch_right, scratch_right)
        pretrained.append(np.where(pretrained_right, labels, 1 - labels))
        scratch.append(np.where(scratch_right, labels, 1 - labels))
    return labels, np.stack(pretrained), np.stack(scratch)


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for tau in (0.0, 0.02, 0.04):
        for seeds in (1, 3, 5, 10):
            started, covered, widths = time.perf_counter(), 0, []
            for draw in range(DRAWS):
                labels, pretrained, scratch = simulate(seeds, tau, rng)
                gain = paired_bootstrap(
                    "accuracy", labels, pretrained, scratch, 2, RESAMPLES, CONFIDENCE, draw
                )
                covered += gain["ci_low"] <= MU <= gain["ci_high"]
                widths.append(gain["ci_high"] - gain["ci_low"])
            rows.append(
                {
                    "seed_sd": tau,
                    "seeds": seeds,
                    "coverage": covered / DRAWS,
                    "mean_width": float(np.mean(widths)),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(rows[-1], flush=True)
    result = {
        "machine": describe(),
        "setup": {
            "test_rows": N,
            "true_gain": MU,
            "scratch_accuracy": SCRATCH_ACCURACY,
            "draws": DRAWS,
            "bootstrap_resamples": RESAMPLES,
            "confidence": CONFIDENCE,
        },
        "rows": rows,
    }
    write_result(Path(__file__).parent / "results" / "seeds_coverage.json", result)


if __name__ == "__main__":
    main()
