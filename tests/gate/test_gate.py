import json

import numpy as np
import pytest
from support.gate import curve, fake_evaluation, fake_probe, flip

from warmstart.config import GateConfig
from warmstart.errors import WarmstartError
from warmstart.gate.policy import apply_policy, decide, gate
from warmstart.gate.stats import curve_tests, mean_curve, paired_bootstrap
from warmstart.metrics import metric, weighted_metric


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, 2, 600)


def test_weighted_metrics_match_the_direct_computation():
    rng = np.random.default_rng(1)
    labels, predicted = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert metric("accuracy", labels, predicted, 3) == pytest.approx((labels == predicted).mean())
    f1s = []
    for c in range(3):
        tp = ((labels == c) & (predicted == c)).sum()
        f1s.append(2 * tp / ((labels == c).sum() + (predicted == c).sum()))
    assert metric("macro_f1", labels, predicted, 3) == pytest.approx(np.mean(f1s))
    # Integer weights are the same as repeating examples.
    weights = rng.integers(0, 3, 300)
    repeated = np.repeat(np.arange(300), weights)
    assert weighted_metric("macro_f1", labels, predicted, weights[None, :], 3)[0] == pytest.approx(
        metric("macro_f1", labels[repeated], predicted[repeated], 3)
    )


def test_bootstrap_matches_a_plain_loop_and_is_seeded(labels):
    rng = np.random.default_rng(2)
    pretrained, scratch = flip(labels, 0.15, rng), flip(labels, 0.3, rng)
    fast = paired_bootstrap("accuracy", labels, pretrained, scratch, 2, 4000, 0.95, seed=3)
    assert fast == paired_bootstrap("accuracy", labels, pretrained, scratch, 2, 4000, 0.95, seed=3)
    loop_rng = np.random.default_rng(11)
    gains = []
    for _ in range(4000):
        idx = loop_rng.integers(0, len(labels), len(labels))
        gains.append((pretrained[idx] == labels[idx]).mean() - (scratch[idx] == labels[idx]).mean())
    assert fast["estimate"] == pytest.approx((pretrained == labels).mean() - (scratch == labels).mean())
    assert fast["ci_low"] == pytest.approx(np.quantile(gains, 0.025), abs=0.01)
    assert fast["ci_high"] == pytest.approx(np.quantile(gains, 0.975), abs=0.01)
    assert fast["ci_low"] < fast["estimate"] < fast["ci_high"]


def test_bootstrap_blocks_give_the_same_answer_as_one_block(labels, monkeypatch):
    rng = np.random.default_rng(4)
    pretrained, scratch = flip(labels, 0.2, rng), flip(labels, 0.25, rng)
    whole = paired_bootstrap("macro_f1", labels, pretrained, scratch, 2, 2000, 0.9, seed=5)
    monkeypatch.setattr("warmstart.gate.stats.BLOCK_CELLS", 600 * 7)
    assert paired_bootstrap("macro_f1", labels, pretrained, scratch, 2, 2000, 0.9, seed=5) == whole


@pytest.mark.parametrize(
    "low, high, min_gain, verdict",
    [
        (0.02, 0.08, 0.0, "positive"),
        (0.02, 0.08, 0.03, "neutral"),
        (-0.01, 0.05, 0.0, "neutral"),
        (-0.09, -0.02, 0.0, "negative"),
    ],
)
def test_verdicts(low, high, min_gain, verdict):
    found, reason = decide({"ci_low": low, "ci_high": high, "confidence": 0.95}, min_gain)
    assert found == verdict
    assert reason.startswith(verdict)


def test_curve_tests_answer_start_slope_and_asymptote():
    """Each test says "higher" only when its interval lies above zero; without intervals, nothing is."""
    pretrained, scratch = curve([0.7, 0.8, 0.85, 0.86, 0.86]), curve([0.5, 0.55, 0.7, 0.84, 0.88])
    intervals = {
        "start": {"ci_low": 0.1, "ci_high": 0.3, "confidence": 0.95},
        "slope": {"ci_low": 0.01, "ci_high": 0.2, "confidence": 0.95},
        "asymptote": {"ci_low": -0.05, "ci_high": 0.01, "confidence": 0.95},
    }
    tests = curve_tests(pretrained, scratch, "accuracy", intervals)
    assert tests["start"]["higher"] and tests["start"]["difference"] == pytest.approx(0.2)
    assert tests["slope"]["higher"]
    assert not tests["asymptote"]["higher"] and tests["asymptote"]["finding"] == "not distinguishable"
    assert tests["asymptote"]["scratch"] == pytest.approx(0.88)
    unsure = curve_tests(pretrained, scratch, "accuracy")
    assert {unsure[name]["finding"] for name in ("start", "slope", "asymptote")} == {"not distinguishable"}


def validation_run(labels, accuracies, rng, steps=None):
    """A learning curve with its per-row validation predictions: at each point, that share of rows right."""
    columns = np.stack([flip(labels, 1 - accuracy, rng) for accuracy in accuracies], axis=1)
    points = steps or [10 * i for i in range(len(accuracies))]
    run_curve = [
        {"step": step, "accuracy": float((columns[:, i] == labels).mean()), "macro_f1": 0.0}
        for i, step in enumerate(points)
    ]
    return {"curve": run_curve, "labels": labels, "predicted": columns}


def test_curve_intervals_tell_a_real_difference_from_noise():
    from warmstart.gate.stats import curve_intervals

    rng = np.random.default_rng(30)
    labels = rng.integers(0, 2, 400)
    ahead = validation_run(labels, [0.5, 0.8, 0.85, 0.86], rng)
    behind = validation_run(labels, [0.5, 0.6, 0.7, 0.85], rng)
    found = curve_intervals([ahead], [behind], "accuracy", 2, 2000, 0.95, seed=1)
    tests = curve_tests(ahead["curve"], behind["curve"], "accuracy", found)
    assert tests["slope"]["finding"] == "higher" and found["slope"]["ci_low"] > 0
    assert tests["asymptote"]["finding"] == "not distinguishable"
    assert found["asymptote"]["ci_low"] < tests["asymptote"]["difference"] < found["asymptote"]["ci_high"]
    # The same curves on both arms: every interval holds zero.
    same = curve_intervals([ahead], [ahead], "accuracy", 2, 2000, 0.95, seed=1)
    assert all(same[name]["ci_low"] <= 0 <= same[name]["ci_high"] for name in same)
    # Arms evaluated at other steps (an early stop, a rung) are compared on the union of their steps.
    short = validation_run(labels, [0.5, 0.6], rng, steps=[0, 15])
    assert curve_intervals([ahead], [short], "accuracy", 2, 500, 0.95, seed=1) is not None
    # Without per-row predictions (an older evaluation) there is no interval.
    assert curve_intervals([{**ahead, "predicted": None}], [behind], "accuracy", 2, 500, 0.95, 1) is None


def test_gate_says_positive_negative_and_neutral(tmp_path, labels):
    rng = np.random.default_rng(6)
    good, poor = flip(labels, 0.1, rng), flip(labels, 0.35, rng)
    cases = {"positive": (good, poor), "negative": (poor, good), "neutral": (good, good)}
    for expected, (pretrained, scratch) in cases.items():
        p = fake_evaluation(tmp_path / expected / "p", "pretrained", labels, pretrained, curve([0.6, 0.8]))
        s = fake_evaluation(tmp_path / expected / "s", "scratch", labels, scratch, curve([0.5, 0.7]))
        result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / expected / "out")
        assert result["verdict"] == expected
        assert result["passed"] == (expected == "positive")
        report = (tmp_path / expected / "out" / "report.md").read_text()
        assert f"Transfer gate: {expected}" in report
        assert result["decision_rule"] in report


def test_gate_refuses_evaluations_of_different_test_splits(tmp_path, labels):
    p = fake_evaluation(tmp_path / "p", "pretrained", labels, labels, curve([0.6, 0.8]), fingerprint="a" * 64)
    s = fake_evaluation(tmp_path / "s", "scratch", labels, labels, curve([0.6, 0.8]), fingerprint="b" * 64)
    with pytest.raises(WarmstartError, match="different test splits"):
        gate(GateConfig(), p, s, tmp_path / "out")
    with pytest.raises(WarmstartError, match="pretrained input holds evaluations of init=scratch"):
        gate(GateConfig(), s, p, tmp_path / "out")


def test_gate_refuses_arms_trained_with_different_seeds(tmp_path, labels):
    p = [
        fake_evaluation(tmp_path / f"p{i}", "pretrained", labels, labels, curve([0.6, 0.8]), seed=i)
        for i in (0, 1)
    ]
    s = [
        fake_evaluation(tmp_path / f"s{i}", "scratch", labels, labels, curve([0.6, 0.8]), seed=i)
        for i in (0, 2)
    ]
    with pytest.raises(WarmstartError, match=r"different seeds \(pretrained \[0, 1\], scratch \[0, 2\]\)"):
        gate(GateConfig(), p, s, tmp_path / "out")


def versus(low, high, estimate=None):
    gain = {
        "estimate": estimate if estimate is not None else (low + high) / 2,
        "ci_low": low,
        "ci_high": high,
        "confidence": 0.95,
    }
    return {
        "version": 3,
        "comparable": True,
        "reason": "",
        "gain": gain,
        "non_inferior": low > -0.005,
        "superior": low > 0,
    }


@pytest.mark.parametrize(
    "verdict, champion, passed, promote, decided_by",
    [
        ("neutral", versus(0.01, 0.05), False, False, "transfer"),
        ("positive", None, True, True, "transfer"),
        ("positive", {"version": 3, "comparable": False, "reason": "labels differ"}, True, False, "transfer"),
        ("positive", versus(0.01, 0.05), True, True, "champion"),
        ("positive", versus(-0.004, 0.03), True, False, "champion"),
        ("positive", versus(-0.06, -0.01), False, False, "champion"),
    ],
)
def test_champion_policy(verdict, champion, passed, promote, decided_by):
    decision = apply_policy(verdict, f"{verdict} transfer", champion, tolerance=0.005)
    assert (decision["passed"], decision["promote"], decision["decided_by"]) == (passed, promote, decided_by)
    assert decision["reason"].startswith(f"{verdict} transfer")


def test_gate_compares_the_challenger_with_the_champion(tmp_path, labels):
    rng = np.random.default_rng(8)
    good, poor = flip(labels, 0.05, rng), flip(labels, 0.35, rng)
    p = fake_evaluation(tmp_path / "p", "pretrained", labels, flip(labels, 0.2, rng), curve([0.6, 0.8]))
    s = fake_evaluation(tmp_path / "s", "scratch", labels, poor, curve([0.5, 0.6]))
    champion = fake_evaluation(tmp_path / "c", "champion", labels, good, curve([0.9]))
    summary = json.loads((champion / "summary.json").read_text())
    summary.update(version=4, comparable=True, reason="evaluated")
    (champion / "summary.json").write_text(json.dumps(summary))
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out", champion)
    assert result["verdict"] == "positive"
    assert result["champion"]["version"] == 4
    assert result["champion"]["gain"]["ci_high"] < 0
    assert (result["passed"], result["promote"], result["decided_by"]) == (False, False, "champion")
    assert "Challenger vs champion" in (tmp_path / "out" / "report.md").read_text()
    # No champion in the registry: the evaluation says so and the check is skipped.
    none = tmp_path / "none"
    none.mkdir()
    (none / "summary.json").write_text(json.dumps({"init": "champion", "version": None, "comparable": False}))
    alone = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out2", none)
    assert alone["champion"] is None and alone["passed"] and alone["promote"]


def test_mcnemar_matches_the_exact_binomial_by_hand():
    from math import comb

    from warmstart.gate.stats import mcnemar

    labels = np.zeros(1000, dtype=int)
    scratch = np.r_[np.zeros(800, dtype=int), np.ones(200, dtype=int)]  # right on the first 800
    pretrained = scratch.copy()
    pretrained[800:810] = 0  # right on 10 more
    test = mcnemar(labels, pretrained, scratch)
    assert (test["only_pretrained_right"], test["only_scratch_right"]) == (10, 0)
    assert test["p_value"] == pytest.approx(2 * 0.5**10)
    pretrained[:3] = 1  # 3 it now gets wrong that scratch gets right: 10 vs 3 of 13
    test = mcnemar(labels, pretrained, scratch)
    assert test["p_value"] == pytest.approx(2 * sum(comb(13, k) for k in range(4)) / 2**13)
    assert mcnemar(labels, scratch, scratch)["p_value"] == 1.0


def synthetic_pair(n, accuracy_scratch, gain, rng):
    """Paired predictions on n binary examples: scratch right with probability `accuracy_scratch`,
    pretrained right wherever scratch is and on a further share making the true gain `gain`."""
    labels = rng.integers(0, 2, n)
    scratch_right = rng.random(n) < accuracy_scratch
    extra = ~scratch_right & (rng.random(n) < gain / (1 - accuracy_scratch))
    pretrained_right = scratch_right | extra
    return labels, np.where(pretrained_right, labels, 1 - labels), np.where(scratch_right, labels, 1 - labels)


def test_known_differences_get_the_right_verdicts(tmp_path):
    """Identical models: neutral. Right on 10 more of 1,000: the CI holds +0.010. Clearly worse: negative."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 1000)
    scratch = flip(labels, 0.2, rng)
    ten_more = scratch.copy()
    wrong = np.flatnonzero(scratch != labels)[:10]
    ten_more[wrong] = labels[wrong]
    worse = flip(labels, 0.4, rng)
    cases = {"identical": scratch, "ten-more": ten_more, "worse": worse}
    results = {}
    for name, pretrained in cases.items():
        p = fake_evaluation(tmp_path / name / "p", "pretrained", labels, pretrained, curve([0.5, 0.8]))
        s = fake_evaluation(tmp_path / name / "s", "scratch", labels, scratch, curve([0.5, 0.8]))
        results[name] = gate(GateConfig(bootstrap_samples=4000), p, s, tmp_path / name / "out")
    assert results["identical"]["verdict"] == "neutral"
    assert results["identical"]["gain"]["estimate"] == 0 and results["identical"]["mcnemar"]["p_value"] == 1
    ten = results["ten-more"]
    assert ten["gain"]["estimate"] == pytest.approx(0.010)
    assert ten["gain"]["ci_low"] <= 0.010 <= ten["gain"]["ci_high"]
    assert ten["mcnemar"]["p_value"] == pytest.approx(2 * 0.5**10)
    assert results["worse"]["verdict"] == "negative" and results["worse"]["mcnemar"]["p_value"] < 1e-6


def test_the_interval_covers_the_true_gain_at_about_the_nominal_rate():
    """Over 300 simulated test sets with a known true gain of +0.03, the 90% CI covers it 81-97% of the
    time (the binomial spread of 300 draws around 90%, widened for the percentile bootstrap's slight
    under-coverage at n = 400)."""
    rng = np.random.default_rng(11)
    true_gain, draws, covered = 0.03, 300, 0
    for draw in range(draws):
        labels, pretrained, scratch = synthetic_pair(400, 0.75, true_gain, rng)
        gain = paired_bootstrap("accuracy", labels, pretrained, scratch, 2, 1000, 0.90, seed=draw)
        covered += gain["ci_low"] <= true_gain <= gain["ci_high"]
    assert 0.81 <= covered / draws <= 0.97, covered / draws


def test_scratch_steps_to_match_the_pretrained_plateau():
    tests = curve_tests(curve([0.6, 0.8, 0.8, 0.8]), curve([0.4, 0.6, 0.8, 0.85]), "accuracy")
    assert tests["match"] == {"pretrained_asymptote": 0.8, "scratch_steps": 20, "budget_steps": 30}
    never = curve_tests(curve([0.6, 0.8, 0.8, 0.8]), curve([0.4, 0.5, 0.6, 0.7]), "accuracy")
    assert never["match"]["scratch_steps"] is None


def test_shuffled_labels_leave_both_arms_at_chance_and_the_verdict_neutral(tmp_path, tiny_pretrained_model):
    """Labels permuted across the synthetic reviews: nothing to learn, so no transfer to find."""
    import random

    from support.data import synthetic_rows, write_csv
    from support.stages import stage_inputs, tiny_config

    from warmstart.finetune.launch import finetune

    rows = synthetic_rows(400, seed=4)
    labels = [label for _, label in rows]
    random.Random(0).shuffle(labels)
    data = write_csv(
        tmp_path / "shuffled.csv", [(text, label) for (text, _), label in zip(rows, labels, strict=True)]
    )
    cfg, work = stage_inputs(tiny_config(data, tiny_pretrained_model), tmp_path)
    for init in ("pretrained", "scratch"):
        finetune(cfg, init, work / "data", work / "base", work / init, work / f"{init}-evaluation")
    result = gate(cfg.gate, work / "pretrained-evaluation", work / "scratch-evaluation", work / "gate")
    assert result["verdict"] == "neutral", result["reason"]
    for arm in ("pretrained", "scratch"):
        assert abs(result[arm]["accuracy"] - 0.5) < 0.15


def seed_runs(tmp_path, labels, pretrained, scratch, validation=None):
    """Evaluation directories for both arms, one per seed (seed i: pretrained[i] and scratch[i])."""
    validation = validation or [0.8] * len(pretrained)
    p = [
        fake_evaluation(tmp_path / f"p{i}", "pretrained", labels, predicted, curve([0.5, v]), seed=i)
        for i, (predicted, v) in enumerate(zip(pretrained, validation, strict=True))
    ]
    s = [
        fake_evaluation(tmp_path / f"s{i}", "scratch", labels, predicted, curve([0.5, 0.7]), seed=i)
        for i, predicted in enumerate(scratch)
    ]
    return p, s


def test_a_start_that_helps_on_two_seeds_and_hurts_on_one_is_not_called_positive(tmp_path):
    """Per-seed gains of about +0.08, +0.06 and −0.02: each good seed alone is positive, and so would be
    a CI that treated the 3,000 predictions as one test set; resampling the seeds too says neutral."""
    rng = np.random.default_rng(21)
    labels = rng.integers(0, 2, 1000)
    scratch = [flip(labels, 0.25, rng) for _ in range(3)]
    pretrained = [flip(labels, share, rng) for share in (0.17, 0.19, 0.27)]
    p, s = seed_runs(tmp_path, labels, pretrained, scratch)
    result = gate(GateConfig(bootstrap_samples=4000), p, s, tmp_path / "out")
    gains = [run["gain"] for run in result["seeds"]["runs"]]
    assert gains[0] > 0.04 and gains[1] > 0.03 and gains[2] < 0
    assert result["gain"]["estimate"] == pytest.approx(np.mean(gains))
    assert result["verdict"] == "neutral" and not result["passed"]
    assert result["gain"]["ci_low"] < 0 < result["gain"]["ci_high"]
    for i in (0, 1):
        alone = gate(GateConfig(bootstrap_samples=4000), p[i], s[i], tmp_path / f"alone{i}")
        assert alone["verdict"] == "positive"
    pooled_as_one_test_set = paired_bootstrap(
        "accuracy", np.tile(labels, 3), np.concatenate(pretrained), np.concatenate(scratch), 2, 4000, 0.95, 0
    )
    assert pooled_as_one_test_set["ci_low"] > 0


def test_seeds_that_agree_pool_into_a_positive_verdict_and_the_best_validation_run_is_chosen(tmp_path):
    rng = np.random.default_rng(22)
    labels = rng.integers(0, 2, 800)
    scratch = [flip(labels, 0.3, rng) for _ in range(3)]
    pretrained = [flip(labels, 0.15, rng) for _ in range(3)]
    p, s = seed_runs(tmp_path, labels, pretrained, scratch, validation=[0.84, 0.88, 0.86])
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out")
    assert result["verdict"] == "positive" and result["gain"]["seeds"] == 3
    seeds = result["seeds"]
    assert (seeds["count"], seeds["values"], seeds["chosen"]) == (3, [0, 1, 2], 1)
    assert result["pretrained"]["seed"] == result["mcnemar"]["seed"] == 1
    assert result["pretrained"]["model_sha256"] == "pretrained-1"
    assert result["pretrained"]["accuracy"] == pytest.approx((pretrained[1] == labels).mean())
    assert "mean accuracy gain over 3 seeds" in result["decision_rule"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| pretrained (seed 1) |" in report and "| 2 | " in report and "mean of 3 seeds" in report


def test_identical_seeds_give_exactly_the_one_seed_interval(tmp_path):
    """When every seed made the same predictions, resampling seeds changes nothing."""
    rng = np.random.default_rng(23)
    labels = rng.integers(0, 2, 500)
    pretrained, scratch = flip(labels, 0.2, rng), flip(labels, 0.3, rng)
    one = paired_bootstrap("accuracy", labels, pretrained, scratch, 2, 2000, 0.95, seed=4)
    three = paired_bootstrap(
        "accuracy", labels, np.stack([pretrained] * 3), np.stack([scratch] * 3), 2, 2000, 0.95, 4
    )
    assert {k: three[k] for k in ("estimate", "ci_low", "ci_high")} == {
        k: one[k] for k in ("estimate", "ci_low", "ci_high")
    }


def test_the_mean_curve_keeps_an_early_stopped_run_at_its_last_value():
    stopped = [{"step": 0, "accuracy": 0.5, "macro_f1": 0.4}, {"step": 10, "accuracy": 0.7, "macro_f1": 0.6}]
    full = [*curve([0.5, 0.8]), {"step": 20, "accuracy": 0.9, "macro_f1": 0.9}]
    mean = mean_curve([stopped, full])
    assert [point["step"] for point in mean] == [0, 10, 20]
    assert mean[2]["accuracy"] == pytest.approx(0.8) and mean[2]["macro_f1"] == pytest.approx(0.75)
    assert mean_curve([full]) == full


def test_a_fine_tuned_model_below_the_floor_is_not_passed_whatever_it_gained(tmp_path):
    """The few-shot case measured on the demo at K=8: scratch is stuck on the smaller class, pretrained
    beats it clearly but still scores below the majority class. The gain is real and the verdict says
    positive; the gate does not pass a model no better than one that learned nothing."""
    rng = np.random.default_rng(41)
    labels = (rng.random(800) < 0.45).astype(int)  # the floor: constant '0', about 0.55
    minority = np.ones_like(labels)  # about 0.45
    pretrained = np.where(rng.random(800) < 0.55, labels, 1 - labels)  # about 0.55, below the floor's CI
    p = fake_evaluation(tmp_path / "p", "pretrained", labels, pretrained, curve([0.5, 0.52]))
    s = fake_evaluation(tmp_path / "s", "scratch", labels, minority, curve([0.5, 0.45]))
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out")
    assert result["verdict"] == "positive" and result["gain"]["ci_low"] > 0
    assert not result["baselines"]["pretrained"]["clears_floor"]
    assert not result["passed"] and result["decided_by"] == "floor"
    assert "the fine-tuned model does not clear the floor" in result["reason"]


def test_a_scratch_arm_at_the_majority_class_is_said_to_have_learned_nothing(tmp_path):
    """87% of the test rows are one class and scratch predicts it for every row: the gain is real, but
    over a baseline that learned nothing. Reported in the verdict by default; with
    gate.require_learned_baseline the run does not pass."""
    rng = np.random.default_rng(40)
    labels = (rng.random(800) < 0.13).astype(int)
    pretrained = flip(labels, 0.02, rng)
    majority = np.zeros_like(labels)
    p = fake_evaluation(tmp_path / "p", "pretrained", labels, pretrained, curve([0.5, 0.95]))
    s = fake_evaluation(tmp_path / "s", "scratch", labels, majority, curve([0.5, 0.87]))
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out")
    floor = result["baselines"]
    assert floor["value"] == pytest.approx((labels == 0).mean()) and floor["by"] == "constant '0'"
    assert floor["majority_class"]["label"] == "0"
    assert floor["pretrained"]["clears_floor"] and not floor["scratch"]["clears_floor"]
    assert not floor["learned"]
    assert result["verdict"] == "positive" and result["passed"]
    assert "the scratch arm did not clear the floor" in result["reason"]
    assert "Floor: a model that learned nothing" in (tmp_path / "out" / "report.md").read_text()
    strict = gate(
        GateConfig(bootstrap_samples=2000, require_learned_baseline=True), p, s, tmp_path / "strict"
    )
    assert strict["verdict"] == "positive" and not strict["passed"] and strict["decided_by"] == "baseline"
    assert "require_learned_baseline" in strict["reason"]
    # macro-F1's floor is the better of a constant and a guess at the class shares.
    f1 = gate(GateConfig(metric="macro_f1", bootstrap_samples=2000), p, s, tmp_path / "f1")
    assert f1["baselines"]["by"] == "stratified guess" and not f1["baselines"]["learned"]


def test_the_arm_s_best_share_of_the_grid_on_validation_is_the_one_compared(tmp_path, labels):
    """tune.parallel_trials split each arm's grid over two tasks: the gate takes, per seed, the task
    whose chosen rate has the better validation metric, and lists every trial."""
    rng = np.random.default_rng(41)
    good, poor = flip(labels, 0.1, rng), flip(labels, 0.4, rng)
    p = [
        fake_evaluation(
            tmp_path / "p0",
            "pretrained",
            labels,
            good,
            curve([0.5, 0.9]),
            learning_rate=5e-5,
            trials=[(2e-5, 0.85), (5e-5, 0.9)],
        ),
        fake_evaluation(
            tmp_path / "p1",
            "pretrained",
            labels,
            poor,
            curve([0.5, 0.6]),
            learning_rate=1e-4,
            trials=[(1e-4, 0.6)],
        ),
    ]
    s = [
        fake_evaluation(
            tmp_path / "s0",
            "scratch",
            labels,
            poor,
            curve([0.5, 0.6]),
            learning_rate=2e-4,
            trials=[(2e-4, 0.6), (1e-3, 0.55)],
        ),
        fake_evaluation(
            tmp_path / "s1",
            "scratch",
            labels,
            good,
            curve([0.5, 0.88]),
            learning_rate=5e-4,
            trials=[(5e-4, 0.88)],
        ),
    ]
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out")
    assert result["pretrained"]["learning_rate"] == 5e-5 and result["scratch"]["learning_rate"] == 5e-4
    assert result["verdict"] == "neutral"
    tuning = result["tuning"]
    assert tuning["arms"]["pretrained"]["grid"] == [2e-5, 5e-5, 1e-4]
    assert tuning["arms"]["scratch"]["chosen"] == {"0": 5e-4}
    assert len(tuning["trials"]) == 6 and sum(t["chosen"] for t in tuning["trials"]) == 2
    assert tuning["warnings"] == []
    assert tuning["cost"] == {"steps": 600, "untuned_steps": 200, "ratio": 3.0}


def test_pretraining_is_worth_rows_on_the_scratch_curve(tmp_path):
    """Both arms on 10%, 30% and all of 1,000 rows: the pretrained arm at 100 rows scores what scratch
    scores at about 300 (3×), and at 1,000 rows more than scratch ever reached (a bound)."""
    from warmstart.gate.stats import rows_to_match

    rng = np.random.default_rng(42)
    labels = rng.integers(0, 2, 2000)
    accuracy = {"pretrained": [0.80, 0.86, 0.90], "scratch": [0.65, 0.80, 0.85]}
    runs = {arm: [] for arm in accuracy}
    for arm, values in accuracy.items():
        for fraction, value in zip((0.1, 0.3, 1.0), values, strict=True):
            predicted = np.where(np.arange(len(labels)) < value * len(labels), labels, 1 - labels)
            runs[arm].append(
                fake_evaluation(
                    tmp_path / f"{arm}{fraction}",
                    arm,
                    labels,
                    predicted,
                    curve([0.5, value]),
                    fraction=fraction,
                )
            )
    result = gate(GateConfig(bootstrap_samples=1000), runs["pretrained"], runs["scratch"], tmp_path / "out")
    assert result["pretrained"]["train_rows"] == 500, "the verdict is on the whole training split"
    points = {point["data_fraction"]: point for point in result["data_efficiency"]["points"]}
    assert [points[f]["train_rows"] for f in (0.1, 0.3, 1.0)] == [50, 150, 500]
    assert points[0.1]["scratch_rows_to_match"] == pytest.approx(150, rel=0.01)
    assert points[0.1]["multiplier"] == pytest.approx(3, rel=0.01)
    assert points[0.1]["effective_data_transferred"] == pytest.approx(100, rel=0.02)
    assert points[1.0]["scratch_rows_to_match"] is None and points[1.0]["bound"] == "more than 500 rows (1×)"
    assert rows_to_match([100, 1000], [0.6, 0.8], 0.7) == pytest.approx(np.sqrt(100 * 1000))
    assert rows_to_match([100, 1000], [0.6, 0.8], 0.5) == 100
    report = (tmp_path / "out" / "report.md").read_text()
    assert "What pretraining is worth in labelled rows" in report and "3.00× the rows" in report
    one = gate(
        GateConfig(bootstrap_samples=1000), runs["pretrained"][2], runs["scratch"][2], tmp_path / "one"
    )
    assert one["data_efficiency"] is None


def test_the_start_is_the_linear_probe_with_its_interval(tmp_path, labels):
    rng = np.random.default_rng(43)
    p = fake_evaluation(tmp_path / "p", "pretrained", labels, flip(labels, 0.1, rng), curve([0.5, 0.9]))
    s = fake_evaluation(tmp_path / "s", "scratch", labels, flip(labels, 0.3, rng), curve([0.5, 0.7]))
    probe = fake_probe(tmp_path / "screening", labels, flip(labels, 0.15, rng), flip(labels, 0.45, rng))
    result = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "out", screening_dir=probe)
    start = result["curves"]["tests"]["start"]
    assert start["finding"] == "higher" and start["higher"] and start["ci_low"] > 0
    assert start["measured_by"] == "start (linear probe on frozen features)"
    assert start["pretrained"] == pytest.approx(0.85, abs=0.05) and start["scratch"] == pytest.approx(
        0.55, abs=0.05
    )
    # Without per-row validation predictions the slope and asymptote have no interval: not distinguishable.
    assert result["curves"]["tests"]["slope"]["finding"] == "not distinguishable"
    same = fake_probe(tmp_path / "same", labels, labels, labels)
    even = gate(GateConfig(bootstrap_samples=2000), p, s, tmp_path / "even", screening_dir=same)
    assert even["curves"]["tests"]["start"]["finding"] == "not distinguishable"
