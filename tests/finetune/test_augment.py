"""train.augment: training rows of images and audio are augmented, identically for both arms and for a
seed, differently at each epoch, and never validation rows; text refuses it before any training."""

from __future__ import annotations

import numpy as np
import pytest
from support.audio import write_tones
from support.stages import stage_inputs, tiny_config, tiny_image_config, with_train

from warmstart.errors import ConfigError
from warmstart.finetune.train import _arm


def batch(arm, split: str = "train", epoch: int = 0) -> dict[str, np.ndarray]:
    """The first rows of an arm's split as the Trainer's collator hands them to the model, at `epoch`."""
    if arm.augmentation is not None:
        arm.augmentation.epoch = epoch
    rows = getattr(arm, split)
    rows = rows.__getitems__(list(range(min(8, len(rows)))))
    return {key: np.asarray(value) for key, value in arm.inputs.collator()(rows).items()}


def arms(cfg, work):
    return {init: _arm(cfg, init, work / "data", work / "base", 1.0) for init in ("pretrained", "scratch")}


def assert_same(first, second):
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def differs(first, second, key) -> bool:
    return first[key].shape != second[key].shape or not np.array_equal(first[key], second[key])


@pytest.fixture(scope="module")
def tone_folder(tmp_path_factory):
    return write_tones(tmp_path_factory.mktemp("augment-tones") / "tones", per_class=8)


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_augmented_batches_differ_from_raw_ones_and_are_the_same_for_both_arms(
    tmp_path, kind, image_folder, tiny_vision_model, tone_folder, tiny_audio_model
):
    if kind == "image":
        cfg, key = tiny_image_config(image_folder, tiny_vision_model), "pixel_values"
    else:
        cfg, key = tiny_config(tone_folder, tiny_audio_model, images=True), "input_values"
    cfg, work = stage_inputs(cfg, tmp_path)
    raw = arms(cfg, work)["pretrained"]
    augmented = arms(with_train(cfg, augment=True), work)
    pretrained, scratch = augmented["pretrained"], augmented["scratch"]
    assert pretrained.augmentation.description.endswith("kornia" if kind == "image" else "audiomentations")

    first = batch(pretrained)
    assert differs(first, batch(raw), key)
    assert_same(first, batch(scratch))  # the same rows, augmented the same way, in both arms
    assert differs(first, batch(pretrained, epoch=1), key)  # each epoch draws anew
    assert_same(first, batch(pretrained, epoch=0))  # ... and the same again for the same epoch
    other_seed = arms(with_train(cfg, augment=True, seed=1), work)["pretrained"]
    assert differs(first, batch(other_seed), key)
    again = arms(with_train(cfg, augment=True), work)["scratch"]
    assert_same(first, batch(again))  # a new process with the same seed sees the same rows
    assert_same(batch(pretrained, "validation"), batch(raw, "validation"))  # validation rows: never


def test_augmentation_is_named_in_the_report_of_a_run(tmp_path, image_folder, tiny_vision_model):
    from warmstart.finetune.launch import finetune
    from warmstart.gate.policy import gate

    cfg, work = stage_inputs(
        tiny_image_config(image_folder, tiny_vision_model, augment=True, epochs=1), tmp_path
    )
    for init in ("pretrained", "scratch"):
        summary = finetune(
            cfg, init, work / "data", work / "base", work / f"{init}-model", work / f"{init}-evaluation"
        )
        assert "kornia" in summary["augmentation"]
    gate(cfg.gate, work / "pretrained-evaluation", work / "scratch-evaluation", work / "gate")
    report = (work / "gate" / "report.md").read_text()
    assert "Training rows of both arms were augmented the same way" in report and "by kornia" in report
    assert "augmented the same way" in (work / "gate" / "report.html").read_text()


def test_text_refuses_augmentation_before_any_training(tmp_path, synthetic_csv, tiny_pretrained_model):
    from warmstart.finetune.strategies import check_strategy

    cfg, work = stage_inputs(tiny_config(synthetic_csv, tiny_pretrained_model, augment=True), tmp_path)
    with pytest.raises(ConfigError, match="train.augment is for images and audio; this data is text"):
        check_strategy(cfg.train, work / "data", work / "base")
