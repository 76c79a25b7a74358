"""Audio classification: ingest decodes clips once (WAV, FLAC, OGG; folders and tables of paths, bytes or
🤗 datasets' audio structs), the model side runs a tiny random-init wav2vec2 through every stage, and
`warmstart run` on real speech (espeak-ng's keywords in four accents) ends with a verdict; a registered
speech model answers `warmstart serve` from an audio file. No pretrained audio weights can be
downloaded here, so none is used."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from support.audio import tone, write_tones
from support.cli import run_warmstart
from support.serving import post, serving, trained_and_registered
from support.stages import stage_inputs, tiny_config

from warmstart.config import DataConfig
from warmstart.deploy import smoke_inputs
from warmstart.errors import DataError, ModelError
from warmstart.ingest.dataset import ingest
from warmstart.registry import Registry


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Low and high tones at 8 kHz, 12 a class, in WAV, FLAC and OGG."""
    root = tmp_path_factory.mktemp("tones") / "tones"
    write_tones(root, per_class=12)
    for label in ("low", "high"):  # a third of each class re-encoded as FLAC, another as OGG Vorbis
        for i in range(0, 12, 3):
            signal, rate = soundfile.read(root / label / f"{i}.wav", dtype="float32")
            (root / label / f"{i}.wav").unlink()
            soundfile.write(root / label / f"{i}.flac", signal, rate)
        for i in range(1, 12, 3):
            signal, rate = soundfile.read(root / label / f"{i}.wav", dtype="float32")
            (root / label / f"{i}.wav").unlink()
            soundfile.write(root / label / f"{i}.ogg", signal, rate, format="OGG")
    return root


def test_an_audio_folder_is_decoded_resampled_cleaned_and_described(tmp_path, tones):
    folder = tmp_path / "tones"
    shutil.copytree(tones, folder)
    (folder / "low" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")  # dropped and counted
    # The same sound in another container (16-bit WAV → FLAC is lossless): one clip, so a duplicate.
    signal, rate = soundfile.read(folder / "low" / "2.wav", dtype="int16")
    soundfile.write(folder / "low" / "2-again.flac", signal, rate)
    long = np.concatenate([tone(440, 3.0, 8000, seed=5)])
    soundfile.write(folder / "high" / "long.wav", long, 8000)
    card = ingest(
        DataConfig(source=str(folder), test_source="", test_fraction=0.25, max_seconds=1.5), tmp_path / "out"
    )
    assert card["modality"] == "audio" and card["format"] == "audiofolder"
    assert card["removed"]["unreadable"] == 1 and card["removed"]["duplicates"] == 1
    audio = card["audio"]
    assert audio["formats"] == {"FLAC": 9, "OGG": 8, "WAV": 8} and audio["source_sample_rates"] == {
        "8000": 25
    }
    assert audio["sample_rate"] == 16000 and audio["cut"] == 1 and audio["seconds"]["max"] == 3.0
    split = pq.read_table(tmp_path / "out" / "train.parquet")
    assert split.column_names == ["id", "name", "audio", "sample_rate", "label"]
    rows = split.to_pylist() + pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    by_name = {
        row["name"]: row for row in rows + pq.read_table(tmp_path / "out" / "validation.parquet").to_pylist()
    }
    # Decoded once, at 16 kHz: the 0.25 s clip 0 holds 4,000 samples; the long one is cut to 1.5 s.
    assert len(np.frombuffer(by_name["low/0.flac"]["audio"], np.float32)) == 4000
    assert len(np.frombuffer(by_name["high/long.wav"]["audio"], np.float32)) == 24000
    from warmstart.ingest.card import data_card_markdown

    text = data_card_markdown(card)
    assert "audio in class folders" in text and "resampled to 16000 Hz" in text and "1 unreadable" in text


def test_tables_of_paths_bytes_or_audio_structs_hold_the_same_clips_as_the_folder(tmp_path, tones):
    files = sorted(p for p in tones.rglob("*") if p.is_file())
    names = [p.relative_to(tones).as_posix() for p in files]
    labels = [p.parent.name for p in files]
    (tmp_path / "index.csv").write_text(
        "file,y\n" + "".join(f"{tones / n},{y}\n" for n, y in zip(names, labels, strict=True))
    )
    pq.write_table(
        pa.table({"clip": [p.read_bytes() for p in files], "y": labels}), tmp_path / "bytes.parquet"
    )
    # 🤗 datasets writes an Audio feature to Parquet as {bytes, path} structs.
    structs = [{"bytes": p.read_bytes(), "path": n} for p, n in zip(files, names, strict=True)]
    pq.write_table(pa.table({"audio": structs, "y": labels}), tmp_path / "structs.parquet")

    def fingerprint(source, column):
        values = {"source": str(source), "test_source": "", "label_column": "y", "audio_column": column}
        return ingest(DataConfig(**values), tmp_path / f"out-{source.stem}")["fingerprint"]

    folder = ingest(DataConfig(source=str(tones), test_source=""), tmp_path / "folder")["fingerprint"]
    assert fingerprint(tmp_path / "index.csv", "file") == folder
    assert fingerprint(tmp_path / "bytes.parquet", "clip") == folder
    assert fingerprint(tmp_path / "structs.parquet", "audio") == folder


def test_audio_data_mistakes_get_one_clear_error(tmp_path, tones, tiny_vision_model, tiny_audio_model):
    mixed = tmp_path / "mixed"
    shutil.copytree(tones, mixed)
    (mixed / "low" / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="holds both images .* and audio"):
        ingest(DataConfig(source=str(mixed), test_source=""), tmp_path / "a")
    (tmp_path / "index.csv").write_text("file,y\nmissing.wav,low\n")
    with pytest.raises(DataError, match=r"row 1|line 2"):
        ingest(
            DataConfig(source=str(tmp_path / "index.csv"), audio_column="file", label_column="y"),
            tmp_path / "b",
        )
    with pytest.raises(DataError, match="image_column and data.audio_column are both set"):
        ingest(
            DataConfig(source=str(tmp_path / "index.csv"), audio_column="file", image_column="file"),
            tmp_path / "c",
        )
    junk = tmp_path / "junk"
    for label in ("a", "b"):
        (junk / label).mkdir(parents=True)
        (junk / label / "x.wav").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="no usable rows.*unreadable audio"):
        ingest(DataConfig(source=str(junk), test_source=""), tmp_path / "d")

    from warmstart.inputs import inputs_for

    with pytest.raises(ModelError, match=r"names ViTImageProcessor\), so it is not an audio model"):
        inputs_for("audio", tiny_vision_model, 128)
    with pytest.raises(ModelError, match="no usable tokenizer"):
        inputs_for("text", tiny_audio_model, 128)


def test_the_pre_screen_pools_frames_and_leaves_padding_out(tones, tiny_audio_model, tmp_path):
    """Mean-pooled frames: a clip's features are the same alone and padded in a batch with longer ones."""
    from datasets import Dataset

    from warmstart.fetch_model.transferability import mean_pooled_features

    ingest(DataConfig(source=str(tones), test_source=""), tmp_path / "data")
    rows = Dataset(pq.read_table(tmp_path / "data" / "train.parquet"))
    together = mean_pooled_features(tiny_audio_model, rows, modality="audio", batch_size=8)
    alone = mean_pooled_features(tiny_audio_model, rows.select([0]), modality="audio", batch_size=1)
    assert together.shape == (len(rows), 32)
    np.testing.assert_allclose(together[0], alone[0], atol=0.05)


@pytest.mark.parametrize("strategy", ["feature_extraction", "lora"])
def test_strategies_train_an_audio_model(tmp_path, tones, tiny_audio_model, strategy):
    from warmstart.finetune.launch import finetune

    cfg, work = stage_inputs(
        tiny_config(tones, tiny_audio_model, images=True, strategy=strategy, epochs=1, batch_size=8), tmp_path
    )
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "model", work / "evaluation")
    assert summary["modality"] == "audio" and summary["strategy"] == strategy
    assert summary["trainable_parameters"] < summary["total_parameters"] / 2
    assert (work / "model" / "preprocessor_config.json").is_file()


def test_speech_keywords_run_end_to_end_with_a_verdict(tmp_path, spoken_keywords, tiny_audio_model):
    """`warmstart run` on espeak-ng's "yes", "no", "up", "down" in four accents, through kfp.local."""
    result = run_warmstart(
        "run",
        *("--workdir", str(tmp_path / "work")),
        *(
            "--set",
            f"data.source={spoken_keywords}",
            "--set",
            "data.test_source=",
            "--set",
            "data.test_fraction=0.3",
        ),
        *("--set", f"model.source={tiny_audio_model}", "--set", "registry.name=keywords"),
        *("--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "train.precision=fp32"),
        *("--set", "tune.enabled=false", "--set", "gate.bootstrap_samples=2000"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["verdict"] in ("positive", "neutral", "negative")
    assert (summary.get("registered") is not None) == summary["passed"]
    report = next((tmp_path / "work" / "runs").glob("*/gate/result/report.html")).read_text()
    assert (
        "audio, format audiofolder" in report and "96 WAV" in report and "recorded at 22050 Hz (96)" in report
    )
    assert "keywords" in result.stdout


def test_a_registered_speech_model_answers_serve_from_an_audio_file(
    tmp_path, spoken_keywords, tiny_audio_model
):
    work, record = trained_and_registered(
        tiny_config(spoken_keywords, tiny_audio_model, tmp_path / "r", images=True, epochs=1, batch_size=8),
        tmp_path,
    )
    label_names = json.loads((work / "data" / "data_card.json").read_text())["label_names"]
    clips, offline = smoke_inputs(work / "data", work / "evaluation", count=1_000_000)
    version_dir = Registry(str(tmp_path / "r")).version_uri("tiny", record["version"])
    with serving("--model-dir", version_dir, log=tmp_path / "serve.log") as url:
        status, v1 = post(
            f"{url}/v1/models/tiny:predict", {"instances": [{"audio": {"b64": c}} for c in clips]}
        )
        assert status == 200, v1
        assert [p["label"] for p in v1["predictions"]] == [label_names[i] for i in offline.argmax(axis=1)]
        served = [[p["probabilities"][n] for n in label_names] for p in v1["predictions"]]
        np.testing.assert_allclose(served, offline, atol=1e-4)
        # A file from disk as a client sends it: espeak-ng's 22,050 Hz WAV, resampled by the server.
        path = next((spoken_keywords / "yes").glob("*.wav"))
        request = {
            "inputs": [
                {
                    "name": "audio",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(path.read_bytes()).decode()],
                }
            ]
        }
        status, v2 = post(f"{url}/v2/models/tiny/infer", request)
        assert (
            status == 200 and next(o for o in v2["outputs"] if o["name"] == "label")["data"][0] in label_names
        )
        status, answer = post(f"{url}/v1/models/tiny:predict", {"instances": [clips[0], "aGVsbG8="]})
        assert status == 400 and "instances[1] is not audio libsndfile can decode" in answer["error"]
