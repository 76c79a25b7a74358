"""The baseline as a first-class product: each arm's learning rate tuned on one budget, the search's
schedule and cost, a scratch arm that learns what a small transformer can learn, and resume with the
search on."""

import random

import pytest
from support.data import FILLER, write_csv
from support.stages import stage_inputs, tiny_config

from warmstart.config import Config, describe_fields, load_config
from warmstart.finetune.launch import finetune
from warmstart.finetune.tuning import (
    edge_warning,
    grid,
    middle,
    plan,
    ranking,
    rungs,
    share_of,
    shares,
    standard_error,
    steps_cost,
    survivors,
)

SPAM_WORDS = ["win", "free", "prize", "cash", "claim", "offer", "urgent", "call"]


def spam_like_rows(count: int, seed: int, minority: float = 0.13) -> list[tuple[str, str]]:
    """A spam-filter-like task: 13% of rows are 'spam', longer texts holding two spam words; 'ham' rows
    are short filler. A keyword rule a small transformer learns from scratch, whose minority class is
    the long one (what length-grouped batches turn into batches of one class)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        if rng.random() < minority:
            words, label = rng.choices(FILLER, k=rng.randint(10, 16)) + rng.sample(SPAM_WORDS, 2), "spam"
        else:
            words, label = rng.choices(FILLER, k=rng.randint(3, 8)), "ham"
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return rows


def test_each_arm_tries_its_own_grid_and_its_train_rate():
    cfg = Config.from_dict(
        {
            "train": {"learning_rate": 3e-5, "scratch_learning_rate": 5e-6},
            "tune": {"learning_rates": [1e-4, 2e-5], "scratch_learning_rates": [1e-3, 2e-4]},
        }
    )
    assert grid(cfg, "pretrained") == [2e-5, 3e-5, 1e-4]
    assert grid(cfg, "scratch") == [5e-6, 2e-4, 1e-3]
    off = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"enabled": False})})
    assert grid(off, "pretrained") == [3e-5] and grid(off, "scratch") == [5e-6]
    # The defaults: three rates per arm around each arm's own rate.
    default = Config()
    assert grid(default, "pretrained") == [2e-5, 5e-5, 1e-4]
    assert grid(default, "scratch") == [2e-4, 5e-4, 1e-3]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("full", [2e-5, 5e-5, 1e-4]),  # the demo's grid, as before
        ("partial_freeze", [2e-5, 5e-5, 1e-4]),
        ("llrd", [5e-5, 1e-4, 2e-4]),
        ("lora", [2e-4, 5e-4, 1e-3]),
        ("feature_extraction", [3e-3, 1e-2, 3e-2]),  # a linear layer on frozen features
    ],
)
def test_the_pretrained_arms_default_grid_follows_the_strategy_and_the_scratch_arms_does_not(
    tmp_path, strategy, expected
):
    cfg = Config.from_dict({"train": {"strategy": strategy}})
    assert grid(cfg, "pretrained") == expected
    assert grid(cfg, "scratch") == [2e-4, 5e-4, 1e-3]
    untuned = Config.from_dict({"train": {"strategy": strategy}, "tune": {"enabled": False}})
    assert grid(untuned, "pretrained") == [expected[1]] and grid(untuned, "scratch") == [5e-4]
    # The pipeline's tasks see the config after a model_dump (every field then counts as set), and a
    # file from `warmstart config` spells out every default: the grid still follows the strategy.
    assert grid(Config.from_dict(cfg.model_dump()), "pretrained") == expected
    written = tmp_path / "my.yaml"
    written.write_text(describe_fields())
    assert grid(load_config(written, [f"train.strategy={strategy}"]), "pretrained") == expected


def test_an_explicit_rate_or_grid_wins_over_the_strategys_default():
    def pretrained(train: dict | None = None, tune: dict | None = None) -> list[float]:
        """The feature_extraction arm's grid with these settings, as a pipeline task sees it."""
        cfg = Config.from_dict(
            {"train": {"strategy": "feature_extraction", **(train or {})}, "tune": tune or {}}
        )
        return grid(Config.from_dict(cfg.model_dump()), "pretrained")

    # A grid of one's own replaces the strategy's; the arm's own rate (here the strategy's middle) is added.
    assert pretrained(tune={"learning_rates": [1e-1, 3e-1]}) == [1e-2, 1e-1, 3e-1]
    # A rate of one's own takes the middle's place between the strategy's low and high rates, and is the
    # one an untuned run trains at.
    assert pretrained(train={"learning_rate": 2e-2}) == [3e-3, 2e-2, 3e-2]
    assert pretrained(train={"learning_rate": 2e-2}, tune={"enabled": False}) == [2e-2]
    # Both set: exactly what was asked for, whatever the strategy.
    assert pretrained(train={"learning_rate": 3e-5}, tune={"learning_rates": [1e-5]}) == [1e-5, 3e-5]
    # 5e-5 set explicitly is 5e-5, whatever the strategy: no value stands for another.
    assert pretrained(train={"learning_rate": 5e-5}, tune={"enabled": False}) == [5e-5]
    assert pretrained(tune={"learning_rates": [5e-5]}) == [5e-5, 1e-2]


def test_a_feature_extraction_head_trains_at_the_strategys_rate_unless_told_otherwise(
    tmp_path, synthetic_csv, tiny_random_model
):
    """Untuned, with train.learning_rate left empty: the head trains at 1e-2 (feature extraction's
    middle rate), not at full fine-tuning's 5e-5."""
    cfg = tiny_config(synthetic_csv, tiny_random_model, epochs=1, strategy="feature_extraction")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"learning_rate": None})})
    cfg, work = stage_inputs(cfg, tmp_path)
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "m", work / "e")
    assert summary["strategy"] == "feature_extraction" and summary["learning_rate"] == 1e-2


def test_the_plan_fans_out_over_seeds_fractions_and_grid_shares():
    cfg = Config.from_dict(
        {
            "train": {"seeds": [0, 1]},
            "tune": {"parallel_trials": 2, "scratch_learning_rates": [1e-3, 2e-4, 1e-4]},
            "gate": {"data_fractions": [0.5]},
        }
    )
    runs = plan(cfg)
    assert len(runs) == 2 * 2 * 2 * 2
    assert {(run["seed"], run["fraction"], run["share"], run["init"]) for run in runs} == {
        (seed, fraction, share, init)
        for seed in (0, 1)
        for fraction in (0.5, 1.0)
        for share in (0, 1)
        for init in ("pretrained", "scratch")
    }
    # The two arms of a run are neighbours, so two tasks at once train one run's arms side by side.
    assert all(
        {k: v for k, v in a.items() if k != "init"} == {k: v for k, v in b.items() if k != "init"}
        for a, b in zip(runs[::2], runs[1::2], strict=True)
    )
    # Both arms get the same number of shares, each non-empty, together the whole grid.
    assert len(shares(cfg, "pretrained")) == len(shares(cfg, "scratch")) == 2
    assert sorted(share_of(cfg, "scratch", 0) + share_of(cfg, "scratch", 1)) == grid(cfg, "scratch")
    assert plan(Config()) == [
        {"seed": 0, "fraction": 1.0, "share": 0, "init": "pretrained"},
        {"seed": 0, "fraction": 1.0, "share": 0, "init": "scratch"},
    ]


@pytest.mark.parametrize(
    "count, reduction, expected",
    [
        (1, 3, [(90, 1)]),
        (2, 3, [(90, 2)]),
        (3, 3, [(30, 3), (90, 1)]),
        (4, 2, [(22, 4), (45, 2), (90, 1)]),
        (9, 3, [(10, 9), (30, 3), (90, 1)]),
    ],
)
def test_successive_halving_schedule(count, reduction, expected):
    assert rungs(count, 90, reduction) == expected


def test_a_three_rate_search_costs_well_under_three_runs():
    assert steps_cost(3, 90, 3) == 3 * 30 + 60  # 1.67 runs
    assert steps_cost(3, 87, 3, every=11) / 87 < 1.6
    # Rungs sit on learning-curve points (rounded down), and rungs that fall on one step merge.
    assert rungs(3, 87, 3, every=11) == [(22, 3), (87, 1)]
    assert rungs(9, 2, 3) == [(1, 9), (2, 3)]


def test_the_best_rates_go_on_and_a_plateau_goes_to_the_middle_of_the_grid():
    def trial(rate, accuracy, loss):
        return {"learning_rate": rate, "validation": {"accuracy": accuracy, "loss": loss}}

    separated = [trial(1e-5, 0.70, 0.60), trial(1e-4, 0.82, 0.45), trial(1e-3, 0.75, 0.50)]
    assert survivors(separated, 1, "accuracy", middle([1e-5, 1e-4, 1e-3])) == [1]
    # A plateau, as measured on the demo's scratch arm: every rate predicts the majority class, and the
    # lowest loss belongs to the rate that has barely moved (5e-6). The middle of the grid goes on.
    grid_rates = [5e-6, 2e-4, 5e-4, 1e-3]
    plateau = [
        trial(5e-6, 0.52, 0.692),
        trial(2e-4, 0.52, 0.697),
        trial(5e-4, 0.52, 0.692),
        trial(1e-3, 0.52, 0.71),
    ]
    assert middle(grid_rates) == pytest.approx(1.5e-4, rel=0.05)
    assert survivors(plateau, 1, "accuracy", middle(grid_rates)) == [1]
    assert survivors(plateau, 1, "accuracy") == [0], (
        "without the middle rule the loss picks the rate that never moved"
    )


def test_rates_the_validation_split_cannot_tell_apart_are_tied():
    """The demo's pretrained arm at its rung, 100 validation rows: 2e-5 led by one row (0.64 to 0.63)
    and, chosen, ended at 0.674 test accuracy where 5e-5 ends at 0.812. One standard error of 0.64 on
    100 rows is 0.048: the three are tied and the middle of the grid goes on."""

    def trial(rate, accuracy, loss):
        return {"learning_rate": rate, "validation": {"accuracy": accuracy, "loss": loss}}

    rates = [2e-5, 5e-5, 1e-4]
    rung = [trial(2e-5, 0.64, 0.66), trial(5e-5, 0.63, 0.64), trial(1e-4, 0.61, 0.65)]
    assert standard_error(0.64, 100) == pytest.approx(0.048, abs=1e-3)
    assert survivors(rung, 1, "accuracy", middle(rates), rows=100) == [1]
    assert survivors(rung, 1, "accuracy", middle(rates)) == [0], "without the rows, only exact ties tie"
    # A difference the split can resolve still decides: 0.71 against 0.59 and 0.63 on 100 rows.
    clear = [trial(2e-5, 0.59, 0.66), trial(5e-5, 0.63, 0.64), trial(1e-4, 0.71, 0.60)]
    assert ranking(clear, "accuracy", middle(rates), rows=100)[0] == 2
    # On many rows the same one-point lead is real.
    assert survivors(rung, 1, "accuracy", middle(rates), rows=100_000) == [0]


def test_a_chosen_rate_at_the_edge_of_its_grid_is_warned_about():
    assert "lowest of its grid" in edge_warning("scratch", [1e-4, 1e-3], 1e-4)
    assert "tune.scratch_learning_rates" in edge_warning("scratch", [1e-4, 1e-3], 1e-3)
    assert edge_warning("pretrained", [1e-5, 3e-5, 1e-4], 3e-5) is None
    assert edge_warning("pretrained", [3e-5], 3e-5) is None


def test_the_scratch_arm_learns_a_spam_like_rule_whose_minority_class_is_long(tmp_path, tiny_random_model):
    """13% spam, longer than the ham: with shuffled batches a tiny transformer learns the keyword rule
    from scratch. (With transformers' length-grouped batches, the old default, it sat at the majority
    class at this rate: bench/scratch_baseline.py measures both on real data.)"""
    data = write_csv(tmp_path / "messages.csv", spam_like_rows(800, seed=3))
    cfg, work = stage_inputs(
        tiny_config(data, tiny_random_model, epochs=4, scratch_learning_rate=1e-2, eval_points=4), tmp_path
    )
    summary = finetune(cfg, "scratch", work / "data", work / "base", work / "m", work / "e")
    assert summary["test_metrics"]["macro_f1"] > 0.95, summary["learning_curve"]


def test_a_bad_scratch_rate_is_not_chosen_and_the_search_ends_as_the_good_rate_alone(
    tmp_path, synthetic_csv, tiny_random_model
):
    """train.scratch_learning_rate=5e-6 (far too low) with a grid that holds good rates: the search keeps
    a good one, and its run (continued from its rung's checkpoint) is exactly the run that rate makes
    when trained alone: the same model, the same curve. (At the rung every rate still predicts one
    class, so all go on; the choice is made on the final validation.)"""
    base = tiny_config(synthetic_csv, tiny_random_model, epochs=3, eval_points=3, scratch_learning_rate=5e-6)
    tuned = base.model_copy(
        update={
            "tune": base.tune.model_copy(update={"enabled": True, "scratch_learning_rates": [3e-3, 1e-2]})
        }
    )
    cfg, work = stage_inputs(tuned, tmp_path)
    searched = finetune(
        cfg, "scratch", work / "data", work / "base", work / "tuned" / "m", work / "tuned" / "e"
    )
    tuning = searched["tuning"]
    assert tuning["learning_rates"] == [5e-6, 3e-3, 1e-2]
    assert searched["learning_rate"] != 5e-6
    assert [trial["chosen"] for trial in tuning["trials"]].count(True) == 1
    alone = finetune(
        cfg,
        "scratch",
        work / "data",
        work / "base",
        work / "alone" / "m",
        work / "alone" / "e",
        learning_rates=[searched["learning_rate"]],
    )
    assert alone["model_sha256"] == searched["model_sha256"]
    assert alone["learning_curve"] == searched["learning_curve"]


def test_a_search_killed_after_a_checkpoint_resumes_and_ends_as_if_never_killed(
    tmp_path, synthetic_csv, tiny_random_model, monkeypatch
):
    """Three scratch rates, one rung: the task dies right after its first checkpoint is stored; the
    restarted task finds every trial where it was and ends with the same choice, model and curve."""
    from warmstart.finetune.checkpoints import Checkpoints

    cfg = tiny_config(
        synthetic_csv,
        tiny_random_model,
        epochs=4,
        eval_points=4,
        checkpoint_steps=4,
        checkpoint_uri=str(tmp_path / "checkpoints"),
        tune={"scratch_learning_rates": [1e-3, 1e-2]},
    )
    cfg, work = stage_inputs(cfg, tmp_path)

    def search(name):
        return finetune(
            cfg, "scratch", work / "data", work / "base", tmp_path / name / "m", tmp_path / name / "e"
        )

    class Crash(Exception):
        pass

    original, saved = Checkpoints.save, []

    def save_then_crash(self, local_dir, step):
        original(self, local_dir, step)
        saved.append(step)
        if len(saved) == 2:  # the second trial's first checkpoint: one trial is at its rung already
            raise Crash

    unbroken = search("unbroken")
    assert len(unbroken["tuning"]["rungs"]) == 2
    monkeypatch.setattr(Checkpoints, "save", save_then_crash)
    with pytest.raises(Crash):
        search("resumed")
    monkeypatch.setattr(Checkpoints, "save", original)
    resumed = search("resumed")
    assert resumed["learning_rate"] == unbroken["learning_rate"]
    assert resumed["model_sha256"] == unbroken["model_sha256"]
    assert resumed["learning_curve"] == unbroken["learning_curve"]
    assert [t["validation"] for t in resumed["tuning"]["trials"]] == [
        t["validation"] for t in unbroken["tuning"]["trials"]
    ]
    assert not list((tmp_path / "checkpoints").rglob("complete.json")), (
        "every trial's checkpoints are cleared"
    )
