"""Text classification tasks for the baseline benchmarks, built from the SST-2 files in ../shared/data.

- `sst2-sentences`: 2,000 SST-2 training phrases of 8 words or more (a seeded sample), tested on the
  872 SST-2 dev sentences. Balanced-ish (55.6% positive in the sample).
- `sst2-imbalanced`: 2,000 such phrases of which 87% are positive, tested on 1,000 held-out phrases of
  the same mix: real text with a strong majority class that does not go with length.
- `spam-like`: a spam filter's shape. 87% "ham" (SST-2 phrases of 3 to 20 words) and 13% "spam":
  generated promotional messages (prize, number to call, small print), longer than the ham. A task a
  from-scratch model can learn, whose minority class is the long one.

Each task is written as a training TSV and a test TSV (columns sentence, label).
"""

from __future__ import annotations

import random
from pathlib import Path

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
TASKS = ("sst2-sentences", "sst2-imbalanced", "spam-like")

OPENINGS = ["congratulations", "urgent", "winner", "final notice", "dear customer", "free entry", "claim now"]
PRIZES = [
    "a 1000 cash prize",
    "a free holiday",
    "a new phone",
    "500 pounds",
    "a gift voucher",
    "bonus credits",
]
ACTIONS = ["call", "text", "reply", "send", "dial"]
WHEN = ["now", "today", "before midnight", "within 24 hours", "this week"]
SMALL_PRINT = ["t&c apply", "standard rates apply", "to opt out reply stop", "16+ only", "limited offer"]


def _rows(file: Path) -> list[tuple[str, str]]:
    rows = []
    with open(file, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            text, label = line.rstrip("\n").split("\t")
            rows.append((text.strip(), label))
    return rows


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\n")
        handle.writelines(f"{text}\t{label}\n" for text, label in rows)
    return path


def _spam(rng: random.Random) -> str:
    number = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 11)))
    words = [
        rng.choice(OPENINGS),
        "!",
        rng.choice(["you have won", "you are awarded"]),
        rng.choice(PRIZES),
        ".",
        rng.choice(ACTIONS),
        number,
        rng.choice(WHEN),
        "to claim",
        ".",
        rng.choice(SMALL_PRINT),
    ]
    if rng.random() < 0.5:
        words += [".", rng.choice(SMALL_PRINT)]
    return " ".join(words)


def write_task(name: str, directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write task `name` under `directory`; returns (train file, test file)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    phrases = _rows(SST2 / "train.tsv")
    if name == "sst2-sentences":
        long = [row for row in phrases if len(row[0].split()) >= 8]
        rng.shuffle(long)
        return _write(directory / "train.tsv", long[:2000]), _write(
            directory / "test.tsv", _rows(SST2 / "dev.tsv")
        )
    if name == "sst2-imbalanced":
        long = [row for row in phrases if len(row[0].split()) >= 8]
        rng.shuffle(long)
        positive = [row for row in long if row[1] == "1"]
        negative = [row for row in long if row[1] == "0"]
        train, test = positive[:1740] + negative[:260], positive[1740:2610] + negative[260:390]
    elif name == "spam-like":
        ham = [(text, "ham") for text, _ in phrases if 3 <= len(text.split()) <= 20]
        rng.shuffle(ham)
        train = ham[:1740] + [(_spam(rng), "spam") for _ in range(260)]
        test = ham[1740:2610] + [(_spam(rng), "spam") for _ in range(130)]
    else:
        raise ValueError(f"unknown task {name!r}; one of {', '.join(TASKS)}")
    rng.shuffle(train)
    rng.shuffle(test)
    return _write(directory / "train.tsv", train), _write(directory / "test.tsv", test)
