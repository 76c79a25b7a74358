"""tuning: the learning-rate search both arms get on one budget, and the plan of training runs.

A from-scratch baseline whose rate nobody tuned is no baseline (Dodge et al., *Show Your Work*,
EMNLP 2019): each arm therefore tries every rate of its own grid (`tune.learning_rates`,
`tune.scratch_learning_rates`, each with the arm's `train` rate), on the same step budget, and keeps
the rate with the best validation metric. The pretrained arm's grid follows `train.strategy` unless
set (config.STRATEGY_LEARNING_RATES: a linear layer on frozen features wants rates a hundred times
those of full fine-tuning); the scratch arm trains every weight from its random init whatever the
strategy, so its grid does not. The search is successive halving (Jamieson & Talwalkar,
AISTATS 2016; the inner loop of Hyperband, Li et al., JMLR 2018): every rate trains the first
1/η^k of the budget, the best 1/η of them continue to the next rung, and so on until one rate has
trained the whole budget. Every trial runs the whole budget's warmup and decay schedule, so the run
that finishes is exactly the run its rate would have made alone, and a rung costs no retraining: the
trials that continue resume from their own checkpoint. With the default three rates and η = 3 an
arm costs 1 + 2/3 of one untuned run instead of 3, and both arms follow the same schedule: the same
tuning budget. Rates the validation split cannot tell apart (within one standard error of the best,
Breiman's one-standard-error rule) count as tied, and a tie goes to the middle of the grid (see
RANK_RULE), never to whichever rate moved least.

The test split is never looked at: rates are compared on the validation split only.
"""

from __future__ import annotations

import math
from typing import Any

from warmstart.config import STRATEGY_LEARNING_RATES, Config, TrainConfig

# How trials are ranked. A rung compares rates on a few hundred validation rows at most (the demo: 100),
# where a point or two of accuracy is noise: with the best at 0.64 on 100 rows, one standard error is
# 0.048. Rates within one standard error of the best are therefore tied (the one-standard-error rule:
# Breiman et al. 1984; Hastie, Tibshirani & Friedman, ESL §7.10). Exact ties are also what a plateau
# looks like (every rate still predicting one class, as a scratch arm does for a while), and a plateau
# says nothing about which rate will learn; the loss would favour the rate that has not moved at all.
# So a tie goes to the rate nearest the middle of the grid, the rate the grid was drawn around, and
# only then to the lower loss. Measured on the demo's pretrained arm: 2e-5 led 5e-5 at the rung by
# 0.64 to 0.63 and ended at 0.674 test accuracy, where 5e-5 ends at 0.812.
RANK_RULE = (
    "the best validation {metric}, where rates within one standard error of the best (on the validation "
    "rows) count as tied; a tie goes to the rate nearest the middle of the grid (log scale), then to the "
    "lower validation loss"
)


def pretrained_rate(train: TrainConfig) -> float:
    """The pretrained arm's own rate: train.learning_rate, or when that is empty (the default), the
    middle rate of the strategy's default grid (the rate an untuned run trains at)."""
    return train.learning_rate or STRATEGY_LEARNING_RATES[train.strategy][1]


def grid(cfg: Config, init: str) -> list[float]:
    """The learning rates one arm tries, lowest first: its tune grid and its own rate (that rate alone
    when tuning is off). The pretrained arm's grid, where tune.learning_rates is empty, is the low and
    high rates of train.strategy's default grid around its own rate (the strategy's middle one unless
    train.learning_rate is set, as the scratch arm's grid is around train.scratch_learning_rate); the
    scratch arm's is tune.scratch_learning_rates whatever the strategy."""
    if init == "pretrained":
        own = pretrained_rate(cfg.train)
        low, _, high = STRATEGY_LEARNING_RATES[cfg.train.strategy]
        rates = cfg.tune.learning_rates or [low, high]
    else:
        own, rates = cfg.train.scratch_learning_rate, cfg.tune.scratch_learning_rates
    if not cfg.tune.enabled:
        return [own]
    return sorted({float(rate) for rate in [*rates, own]})


def shares(cfg: Config, init: str) -> list[list[float]]:
    """The arm's grid split over `tune.parallel_trials` finetune tasks (every other rate, so each share
    spans the grid). Both arms get the same number of shares, so no task is left without a rate."""
    rates = grid(cfg, init)
    parts = min(cfg.tune.parallel_trials, *(len(grid(cfg, arm)) for arm in ("pretrained", "scratch")))
    return [rates[part::parts] for part in range(parts)]


def plan(cfg: Config) -> list[dict[str, Any]]:
    """Every finetune task the pipeline fans out: one per training seed, data fraction, share of the tuning
    grid and arm (init), the two arms of a run side by side. The items of the pipeline's ParallelFor, so
    that the arms of a run train at the same time where there is room for both."""
    return [
        {"seed": seed, "fraction": fraction, "share": share, "init": init}
        for seed in cfg.train.run_seeds()
        for fraction in cfg.gate.fractions()
        for share in range(len(shares(cfg, "pretrained")))
        for init in ("pretrained", "scratch")
    ]


def share_of(cfg: Config, init: str, share: int) -> list[float]:
    """The rates one finetune task of this arm searches."""
    return shares(cfg, init)[share]


def rungs(count: int, total_steps: int, reduction: int, every: int = 1) -> list[tuple[int, int]]:
    """Successive halving over `count` rates: (step, how many rates train to it) per rung; the last rung
    ends at `total_steps`, and the best of the rates it trained is chosen.

    With s = ⌊log_η count⌋ rungs before the last, rung i trains ⌊count / η^i⌋ rates (at least one) to
    total_steps / η^(s − i) steps. 3 rates, η = 3, 90 steps: [(30, 3), (90, 1)]; 2 rates, η = 3: both
    train the whole budget, [(90, 2)]. A rung's step is rounded down to a multiple of `every` (a
    learning-curve point, so the rung compares what the curve shows anyway; at least one); rungs that
    fall on one step are merged.
    """
    if count < 1:
        return []
    stages = int(math.floor(math.log(count, reduction) + 1e-9))
    schedule, survivors, last = [], count, 0
    for rung in range(stages + 1):
        step = max(every, every * math.floor(total_steps / reduction ** (stages - rung) / every))
        step = min(total_steps, max(step, last + 1)) if rung < stages else total_steps
        if step > last:
            schedule.append((step, survivors))
            last = step
        survivors = max(1, survivors // reduction)
    return schedule


def middle(rates: list[float]) -> float:
    """The middle of a grid on a log scale (its geometric mean)."""
    return float(math.exp(sum(math.log(rate) for rate in rates) / len(rates)))


def standard_error(value: float, rows: int) -> float:
    """The binomial standard error of a metric `value` (a share, such as accuracy) measured on `rows`
    rows; for macro-F1 the same formula, an approximation. No rows: 0 (only exact ties are tied)."""
    return math.sqrt(max(value * (1.0 - value), 0.0) / rows) if rows > 0 else 0.0


def ranking(
    trials: list[dict[str, Any]], metric: str, centre: float | None = None, rows: int = 0
) -> list[int]:
    """Indices of `trials` ({learning_rate, validation: {metric, loss}}), best first.

    Trials whose metric lies within one standard error (on `rows` validation rows) of the best one's
    are tied; tied trials rank by the distance of their rate to `centre` (the grid's middle, log
    scale), then by the lower validation loss, then by the lower rate. The others follow by metric.
    """
    if not trials:
        return []
    best = max(trial["validation"][metric] for trial in trials)
    level = best - standard_error(best, rows) - 1e-12

    def key(index: int) -> tuple[int, float, float, float, float]:
        trial = trials[index]
        value, rate = trial["validation"][metric], trial["learning_rate"]
        tied = value >= level
        away = abs(math.log(rate) - math.log(centre)) if centre else 0.0
        return (0 if tied else 1, 0.0 if tied else -value, round(away, 9), trial["validation"]["loss"], rate)

    return sorted(range(len(trials)), key=key)


def survivors(
    trials: list[dict[str, Any]], count: int, metric: str, centre: float | None = None, rows: int = 0
) -> list[int]:
    """Indices of the best `count` trials by `ranking`: the ones that go on to the next rung."""
    return ranking(trials, metric, centre, rows)[:count]


def steps_cost(rates: int, total_steps: int, reduction: int, every: int = 1) -> int:
    """Optimizer steps one arm trains over all its trials (without early stopping)."""
    done, cost = 0, 0
    for step, trained in rungs(rates, total_steps, reduction, every):
        cost += (step - done) * trained
        done = step
    return cost


def edge(rates: list[float], chosen: float) -> str | None:
    """'lowest' or 'highest' when the chosen rate is at an end of a grid of several rates: the best rate
    may lie beyond it."""
    if len(rates) < 2:
        return None
    if chosen == min(rates):
        return "lowest"
    if chosen == max(rates):
        return "highest"
    return None


def edge_warning(arm: str, rates: list[float], chosen: float) -> str | None:
    """The sentence the report shows when the chosen rate sits at an end of its grid."""
    side = edge(rates, chosen)
    if side is None:
        return None
    key = "tune.learning_rates" if arm == "pretrained" else "tune.scratch_learning_rates"
    beyond = "lower" if side == "lowest" else "higher"
    return (
        f"the {arm} arm's chosen rate {chosen:g} is the {side} of its grid "
        f"[{', '.join(f'{rate:g}' for rate in rates)}]: a {beyond} rate may be better; set {key} to this grid "
        f"with a {beyond} rate added"
    )
