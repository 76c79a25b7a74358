"""Whether a run trains or ends early: the comparison with the champion, and stale-input refusal."""

import json

import pytest
from support.registry import make_run_outputs

from warmstart.artifacts import model_fingerprint
from warmstart.config import Config
from warmstart.errors import WarmstartError
from warmstart.ingest.freshness import check, check_inputs, markdown
from warmstart.register.publish import register

FINGERPRINT = "f" * 64


@pytest.fixture
def champion_config(tmp_path, tiny_random_model):
    """A registry whose champion (version 1) was trained with this config on data FINGERPRINT."""
    cfg = Config.from_dict(
        {
            "registry": {"uri": str(tmp_path / "registry"), "name": "reviews"},
            "model": {"source": "pkg://p/m"},
            "train": {"epochs": 2, "checkpoint_uri": str(tmp_path / "ckpt")},
        }
    )
    register(cfg, run_id="run-1", **make_run_outputs(tmp_path / "run", tiny_random_model))
    return cfg


def changed(cfg: Config, **sections) -> Config:
    data = cfg.model_dump()
    for section, values in sections.items():
        data[section].update(values)
    return Config.from_dict(data)


def card(fingerprint: str = FINGERPRINT) -> dict:
    return {"fingerprint": fingerprint}


def test_nothing_changed_skips_and_says_since_which_version(champion_config):
    record = check(champion_config, card())
    assert not record["train"] and record["champion"] == 1 and record["changed"] == []
    assert record["status"].startswith("skipped: data unchanged since version 1 (fingerprint ffffffffffff…")
    assert "--force" in record["status"]
    page = markdown(record)
    assert page.startswith("# warmstart: skipped") and f"`{FINGERPRINT}`" in page


def test_force_trains_anyway(champion_config):
    record = check(champion_config, card(), force=True)
    assert record["train"] and record["forced"]
    assert record["status"] == "training (forced): data unchanged since version 1"


def test_where_checkpoints_go_is_not_a_change(champion_config, tmp_path):
    moved = changed(
        champion_config, placement={"checkpoint_uri": str(tmp_path / "elsewhere"), "checkpoint_keep": 5}
    )
    assert not check(moved, card())["train"]


@pytest.mark.parametrize(
    ("sections", "fingerprint", "says"),
    [
        ({}, "0" * 64, "data (fingerprint ffffffffffff… → 000000000000…)"),
        ({"model": {"source": "pkg://p/other"}}, FINGERPRINT, 'model.source ("pkg://p/m" → "pkg://p/other")'),
        (
            {"model": {"candidates": ["pkg://p/other"]}},
            FINGERPRINT,
            'model.candidates ([] → ["pkg://p/other"])',
        ),
        ({"train": {"epochs": 3}}, FINGERPRINT, "train.epochs (2.0 → 3.0)"),
        ({"train": {"seeds": [0, 1, 2]}}, FINGERPRINT, "train.seeds ([] → [0, 1, 2])"),
    ],
)
def test_a_change_in_data_start_or_recipe_trains_and_names_it(champion_config, sections, fingerprint, says):
    record = check(changed(champion_config, **sections), card(fingerprint))
    assert record["train"] and record["champion"] == 1
    assert record["status"] == f"training: changed since version 1: {says}"


def test_no_registry_or_no_champion_trains(tmp_path):
    for uri in ("", str(tmp_path / "empty")):
        cfg = Config.from_dict({"registry": {"uri": uri, "name": "reviews"}})
        record = check(cfg, card())
        assert record["train"] and record["champion"] is None
        assert record["status"] == "training: reviews has no champion yet"


def test_a_stale_dataset_or_base_model_is_refused(tmp_path):
    dataset, base = tmp_path / "data", tmp_path / "base"
    dataset.mkdir()
    base.mkdir()
    (dataset / "data_card.json").write_text(json.dumps(card()))
    manifest = {"files": {"model.safetensors": {"sha256": "e" * 64}, "config.json": {"sha256": "d" * 64}}}
    (base / "manifest.json").write_text(json.dumps(manifest))
    check_inputs(dataset, base, FINGERPRINT, model_fingerprint(manifest))
    with pytest.raises(
        WarmstartError, match=r"the dataset given is not the one .* rerun the pipeline from ingest"
    ):
        check_inputs(dataset, base, "0" * 64, model_fingerprint(manifest))
    with pytest.raises(WarmstartError, match="the base model given is not the one"):
        check_inputs(dataset, base, FINGERPRINT, "0" * 64)
    # The digest covers every file, whatever order the manifest lists them in.
    reordered = {"files": dict(reversed(list(manifest["files"].items())))}
    assert model_fingerprint(reordered) == model_fingerprint(manifest)


def test_a_run_whose_only_change_is_its_placement_skips(champion_config, tmp_path):
    """Where and how a run executes (the TrainJob's Secret, namespace, image, checkpoints) is not what
    it learns: renaming the nodes' S3 Secret must not make a scheduled run retrain."""
    moved = changed(
        champion_config,
        placement={
            "trainer_s3_secret": "renamed-s3-secret",
            "trainer_namespace": "ml-other",
            "trainer_image": "registry.example/warmstart:2",
            "node_resources": {"cpu": "8"},
            "trainer_timeout_minutes": 60,
            "checkpoint_uri": str(tmp_path / "elsewhere"),
        },
    )
    assert moved.placement.trainer_s3_secret == "renamed-s3-secret"
    record = check(moved, card())
    assert not record["train"] and record["changed"] == []


def test_an_older_champion_with_its_placement_under_train_still_skips(champion_config, monkeypatch):
    """A champion registered before the placement section holds those keys under `train` in its
    lineage: they are read as placement, so the next scheduled run is not a retrain."""
    from warmstart.registry import Registry

    original = Registry.metadata

    def older(self, name, version):
        metadata = original(self, name, version)
        metadata["config"]["train"].update(metadata["config"].pop("placement"))
        return metadata

    monkeypatch.setattr(Registry, "metadata", older)
    assert (
        "checkpoint_uri" in Registry(champion_config.registry.uri).metadata("reviews", 1)["config"]["train"]
    )
    assert not check(champion_config, card())["train"]


def test_old_placement_keys_under_train_work_with_one_line_each(capsys):
    from warmstart import config as config_module
    from warmstart.errors import ConfigError

    config_module._ANNOUNCED.clear()
    first = Config.from_dict({"train": {"trainer_s3_secret": "creds", "checkpoint_keep": 3, "epochs": 2}})
    again = Config.from_dict({"train": {"trainer_s3_secret": "creds"}})
    assert first.placement.trainer_s3_secret == again.placement.trainer_s3_secret == "creds"
    assert first.placement.checkpoint_keep == 3 and first.train.epochs == 2
    assert "trainer_s3_secret" not in first.train.model_dump()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, "one line per old key, once per process"
    assert lines[0].startswith("warmstart: train.checkpoint_keep is now placement.checkpoint_keep")
    assert lines[1].startswith("warmstart: train.trainer_s3_secret is now placement.trainer_s3_secret")
    with pytest.raises(ConfigError, match="placement.checkpoint_keep"):
        Config.from_dict({"train": {"checkpoint_keep": 3}, "placement": {"checkpoint_keep": 4}})
