"""The transferability pre-screen (model.candidates) and registry:// model sources."""

from __future__ import annotations

import json

import pytest
from support.data import synthetic_rows, write_csv
from support.stages import tiny_config

from warmstart.artifacts import SCREENING_FILE, load_manifest
from warmstart.errors import ModelError
from warmstart.fetch_model.screen import fetch_best
from warmstart.fetch_model.sources import fetch
from warmstart.ingest.dataset import ingest


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """Synthetic reviews ingested into splits, as the DAG's first stage leaves them."""
    work = tmp_path_factory.mktemp("screen")
    data = write_csv(work / "reviews.csv", synthetic_rows(300, seed=31))
    ingest(tiny_config(data, work).data, work / "data")
    return data, work / "data"


def test_the_candidate_that_learned_the_task_ranks_first_and_is_fetched(
    tmp_path, reviews, tiny_random_model, tiny_pretrained_model
):
    """source: the random tiny BERT; candidate: the same BERT pre-trained on other reviews. LogME puts
    the pre-trained one first and well above the random-init floor, and it becomes the base model."""
    data, dataset_dir = reviews
    cfg = tiny_config(data, tiny_random_model)
    cfg.model.candidates = [str(tiny_pretrained_model)]
    manifest, screening = fetch_best(cfg, dataset_dir, tmp_path / "base", tmp_path / "screening")
    assert screening["screened"] and screening["chosen"] == str(tiny_pretrained_model)
    assert manifest["source"] == str(tiny_pretrained_model) == load_manifest(tmp_path / "base")["source"]
    ranking = screening["ranking"]
    assert [entry["logme"] for entry in ranking] == sorted(
        (entry["logme"] for entry in ranking), reverse=True
    )
    first, *_ = ranking
    assert first["source"] == str(tiny_pretrained_model) and first["chosen"] and first["above_floor"]
    floor = next(entry for entry in ranking if entry["floor"])
    assert floor["source"].startswith("random init") and first["logme"] > floor["logme"] + 0.05
    assert screening["rows"] == json.loads((dataset_dir / "data_card.json").read_text())["rows"]["train"]
    assert json.loads((tmp_path / "screening" / SCREENING_FILE).read_text()) == screening
    assert not any(p.name.startswith("warmstart-screen-") for p in tmp_path.iterdir()), (
        "temporary copies left"
    )


def test_without_candidates_the_source_is_fetched_without_a_screen(tmp_path, reviews, tiny_random_model):
    data, dataset_dir = reviews
    manifest, screening = fetch_best(tiny_config(data, tiny_random_model), dataset_dir, tmp_path / "base")
    assert not screening["screened"] and screening["chosen"] == str(tiny_random_model)
    assert manifest["source"] == str(tiny_random_model)


def test_a_missing_candidate_is_named_in_the_error(tmp_path, reviews, tiny_random_model):
    data, dataset_dir = reviews
    cfg = tiny_config(data, tiny_random_model)
    cfg.model.candidates = [str(tmp_path / "no-such-model")]
    with pytest.raises(ModelError, match=r"model.candidates\[0\] '.*no-such-model'"):
        fetch_best(cfg, dataset_dir, tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_registry_sources_fetch_the_champion_latest_or_a_version(
    tmp_path, tiny_random_model, tiny_pretrained_model
):
    from support.registry import make_run_outputs

    from warmstart.config import Config
    from warmstart.register.publish import register
    from warmstart.registry import Registry

    uri = str(tmp_path / "registry")
    cfg = Config.from_dict({"registry": {"uri": uri, "name": "reviews"}})
    for run, model in enumerate((tiny_random_model, tiny_pretrained_model), start=1):
        register(cfg, **make_run_outputs(tmp_path / f"run{run}", model))
    Registry(uri).promote("reviews", 1)
    champion = fetch("registry://reviews@champion", tmp_path / "champion", uri)
    assert champion["revision"] == "reviews version 1"
    assert fetch("registry://reviews@latest", tmp_path / "latest", uri)["revision"] == "reviews version 2"
    assert (
        fetch("registry://reviews@2", tmp_path / "two", uri)["files"]["model.safetensors"]["sha256"]
        == (Registry(uri).metadata("reviews", 2)["model_sha256"])
    )
    for source, message in (
        ("registry://reviews@7", r"reviews has no version 7 .* \(versions: 1, 2\)"),
        ("registry://other@champion", r"other has no champion"),
        ("registry://reviews", r"expected registry://NAME@champion"),
    ):
        with pytest.raises(ModelError, match=message):
            fetch(source, tmp_path / "x", uri, what="model.candidates[0]")
    with pytest.raises(ModelError, match="registry.uri is empty"):
        fetch("registry://reviews@champion", tmp_path / "x", "")


def test_images_are_screened_and_a_text_model_among_them_is_named(
    tmp_path, image_folder, tiny_vision_model, tiny_random_model, copy_of
):
    from support.stages import tiny_image_config

    cfg = tiny_image_config(image_folder, tiny_vision_model)
    ingest(cfg.data, tmp_path / "data")
    cfg.model.candidates = [str(copy_of(tiny_vision_model, tmp_path / "vit-copy"))]
    manifest, screening = fetch_best(cfg, tmp_path / "data", tmp_path / "base")
    scores = {entry["source"]: entry["logme"] for entry in screening["ranking"] if not entry["floor"]}
    assert scores[str(tiny_vision_model)] == pytest.approx(scores[cfg.model.candidates[0]])
    assert screening["chosen"] == str(tiny_vision_model) == manifest["source"]
    cfg.model.candidates = [str(tiny_random_model)]
    with pytest.raises(ModelError, match=r"model.candidates\[0\] '.*' has no image processor"):
        fetch_best(cfg, tmp_path / "data", tmp_path / "base2")
