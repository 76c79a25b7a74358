"""data.shots_per_class: K training rows per class, seeded and nested (K=2 ⊂ K=4 ⊂ K=8), with the
validation and test splits taken apart first and the same for every K."""

from __future__ import annotations

import pyarrow.parquet as pq
from support.data import synthetic_rows, write_csv

from warmstart.config import DataConfig
from warmstart.ingest.dataset import ingest


def split_ids(directory, split):
    table = pq.read_table(directory / f"{split}.parquet")
    return {(row["text"], row["label"]) for row in table.select(["text", "label"]).to_pylist()}


def run(tmp_path, source, shots, name, **data):
    cfg = DataConfig(
        source=str(source),
        test_source="",
        text_column="text",
        label_column="sentiment",
        shots_per_class=shots,
        **data,
    )
    card = ingest(cfg, tmp_path / name)
    return card, tmp_path / name


def test_shots_are_nested_per_class_and_the_held_out_splits_do_not_move(tmp_path):
    source = write_csv(tmp_path / "reviews.csv", synthetic_rows(400, seed=3))
    full, full_dir = run(tmp_path, source, 0, "all")
    cuts = {k: run(tmp_path, source, k, f"k{k}") for k in (2, 4, 8)}
    previous = set()
    for k, (card, directory) in cuts.items():
        train = split_ids(directory, "train")
        assert card["label_distribution"]["train"] == {"neg": k, "pos": k}
        assert card["shots_per_class"] == {"shots": k, "short": {}}
        assert previous < train <= split_ids(full_dir, "train"), f"K={k} holds every row of the smaller K"
        previous = train
        for held in ("validation", "test"):
            assert split_ids(directory, held) == split_ids(full_dir, held)
    assert "shots_per_class" not in full
    again, directory = run(tmp_path, source, 4, "k4-again")
    assert (
        split_ids(directory, "train") == split_ids(cuts[4][1], "train")
        and again["fingerprint"] == cuts[4][0]["fingerprint"]
    )
    other_seed, _ = run(tmp_path, source, 4, "k4-seed", split_seed=7)
    assert other_seed["fingerprints"]["train"] != cuts[4][0]["fingerprints"]["train"]


def test_a_class_with_fewer_rows_than_k_keeps_them_all_and_the_card_says_so(tmp_path):
    rows = [row for row in synthetic_rows(300, seed=5) if row[1] == "neg"][:100]
    rows += [row for row in synthetic_rows(300, seed=5) if row[1] == "pos"][:12]
    card, _ = run(tmp_path, write_csv(tmp_path / "skewed.csv", rows), 16, "k16")
    kept = card["label_distribution"]["train"]
    assert kept["neg"] == 16 and kept["pos"] < 16
    assert card["shots_per_class"] == {"shots": 16, "short": {"pos": kept["pos"]}}
