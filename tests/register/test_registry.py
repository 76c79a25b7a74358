import json
import multiprocessing

import pytest
from support.registry import make_run_outputs

from warmstart.config import Config
from warmstart.errors import RegistrationRefused
from warmstart.register.publish import register
from warmstart.registry import Registry
from warmstart.storage import sha256_file


@pytest.fixture(params=["local", "s3"])
def registry_uri(request, tmp_path):
    """The same tests on a local directory and on the real S3 server."""
    if request.param == "local":
        return str(tmp_path / "registry")
    return request.getfixturevalue("s3_prefix") + "/registry"


@pytest.fixture
def outputs(tmp_path, tiny_random_model):
    return lambda salt=0, **kw: make_run_outputs(
        tmp_path / f"run-{salt}-{len(kw)}", tiny_random_model, salt, **kw
    )


def config(uri: str) -> Config:
    return Config.from_dict({"registry": {"uri": uri, "name": "reviews"}})


def test_the_model_card_opens_with_metadata_the_hub_reads(tmp_path, outputs):
    """The card's YAML front matter is what huggingface_hub parses: base model, license, datasets,
    pipeline tag, and a model-index with the test metrics and the gate's verdict."""
    from huggingface_hub import ModelCard

    from warmstart.config import DEMO_MODEL_URI, DEMO_TRAIN_URI

    def card_of(run, manifest_source, data_source="/data/x.csv", **registry):
        cfg = Config.from_dict({"registry": {"uri": str(tmp_path / "r"), "name": "reviews", **registry}})
        made = outputs(run)
        for path, source in (
            (made["base_model_dir"] / "manifest.json", manifest_source),
            (made["dataset_dir"] / "data_card.json", data_source),
        ):
            path.write_text(json.dumps({**json.loads(path.read_text()), "source": source}))
        version = register(cfg, **made)["version"]
        return ModelCard(
            Registry(cfg.registry.uri).store.read(f"reviews/versions/{version}/model_card.md")[0].decode()
        )

    card = card_of(1, "hf://google-bert/bert-base-uncased@86b5e0934494bd15c9632b12f734a8a67f723594")
    assert card.content.startswith("---\n")
    data = card.data
    assert data.base_model == "google-bert/bert-base-uncased" and data.license == "apache-2.0"
    assert data.pipeline_tag == "text-classification" and data.datasets is None
    assert data.model_name == "reviews" and "warmstart" in data.tags
    metrics = {result.metric_type: result for result in data.eval_results}
    assert metrics["accuracy"].metric_value == 0.9 and metrics["accuracy"].dataset_split == "test"
    assert metrics["f1"].metric_args == {"average": "macro"}
    assert metrics["gain_over_scratch"].metric_value == 0.1
    assert "positive transfer" in metrics["gain_over_scratch"].metric_name
    assert data.to_dict()["warmstart"]["gain"] == {"estimate": 0.1, "ci_low": 0.05, "ci_high": 0.15}
    assert "## Why it was registered" in card.text

    demo = card_of(2, DEMO_MODEL_URI, DEMO_TRAIN_URI).data
    assert demo.base_model == "sentence-transformers/all-MiniLM-L6-v2" and demo.datasets == [
        "stanfordnlp/sst2"
    ]
    stated = card_of(3, "/models/mine", card_base_model="org/mine", card_datasets=["org/data"]).data
    assert stated.base_model == "org/mine" and stated.datasets == ["org/data"]
    assert card_of(4, "/models/mine").data.base_model is None  # a local path is no Hub id


def test_versions_count_up_and_champion_follows(registry_uri, outputs):
    cfg = config(registry_uri)
    first = register(cfg, run_id="run-1", **outputs(1))
    second = register(cfg, run_id="run-2", **outputs(2))
    assert (first["version"], second["version"]) == (1, 2)
    assert second["champion"] and not second["existing"]
    registry = Registry(registry_uri)
    assert registry.versions("reviews") == [1, 2]
    assert registry.alias("reviews", "champion") == 2
    assert registry.find("reviews", run_id="run-1") == 1
    assert second["uri"] == f"{registry_uri}/reviews/versions/2"
    assert set(registry.store.children("reviews/versions/2")) == {
        "claim.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model_card.md",
        "metadata.json",
    }
    metadata = registry.metadata("reviews", 2)
    assert metadata["lineage"]["data_fingerprint"] == "f" * 64
    assert metadata["lineage"]["test_fingerprint"] == "c" * 64
    assert metadata["lineage"]["base_model_files"] == {"model.safetensors": "e" * 64}
    card = registry.store.read("reviews/versions/2/model_card.md")[0].decode()
    for fragment in ("positive transfer", "| pretrained | 0.9000", "fingerprint", "pkg://p/m", '"registry"'):
        assert fragment in card


def test_the_same_model_and_lineage_registers_once(registry_uri, outputs):
    cfg = config(registry_uri)
    run = outputs(1)
    first = register(cfg, run_id="a", **run)
    again = register(cfg, run_id="b", **run)
    assert again["version"] == first["version"] == 1
    assert again["existing"] and again["champion"]
    other_data = register(cfg, **outputs(1, data_fingerprint="9" * 64))
    assert other_data["version"] == 2
    assert Registry(registry_uri).versions("reviews") == [1, 2]


def test_a_failed_gate_registers_nothing(registry_uri, outputs):
    run = outputs(1)
    result = json.loads((run["gate_dir"] / "gate_result.json").read_text())
    for verdict in ("neutral", "negative"):
        result.update(passed=False, verdict=verdict, reason=f"{verdict}: no")
        (run["gate_dir"] / "gate_result.json").write_text(json.dumps(result))
        with pytest.raises(RegistrationRefused, match=f"verdict '{verdict}'"):
            register(config(registry_uri), **run)
    assert Registry(registry_uri).versions("reviews") == []


def test_another_model_than_the_judged_one_is_refused(registry_uri, outputs):
    run = outputs(1)
    weights = run["model_dir"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(RegistrationRefused, match="not the one the gate judged"):
        register(config(registry_uri), **run)
    registry = Registry(registry_uri)
    assert registry.alias("reviews", "champion") is None
    assert registry.store.children("reviews") == []


def test_of_one_model_per_seed_the_one_the_gate_chose_is_registered(registry_uri, outputs):
    chosen, others = outputs(1), [outputs(2)["model_dir"], outputs(3)["model_dir"]]
    record = register(
        config(registry_uri), **{**chosen, "model_dir": [others[0], chosen["model_dir"], others[1]]}
    )
    registry = Registry(registry_uri)
    assert registry.metadata("reviews", record["version"])["model_sha256"] == sha256_file(
        chosen["model_dir"] / "model.safetensors"
    )
    with pytest.raises(RegistrationRefused, match="not the one the gate judged"):
        register(config(registry_uri), **{**chosen, "model_dir": others})
    assert registry.versions("reviews") == [1]


def test_a_half_written_version_is_invisible(registry_uri, outputs):
    cfg = config(registry_uri)
    register(cfg, **outputs(1))
    registry = Registry(registry_uri)
    # A crash after claiming number 2 and uploading the weights, before metadata.json.
    assert registry.store.create("reviews/versions/2/claim.json", b"{}")
    registry.store.put_file(
        "reviews/versions/2/model.safetensors", outputs(2)["model_dir"] / "model.safetensors"
    )
    assert registry.versions("reviews") == [1]
    assert registry.alias("reviews", "champion") == 1
    assert register(cfg, **outputs(3))["version"] == 3


def test_an_interrupt_during_the_upload_leaves_nothing_of_the_version(registry_uri, outputs, monkeypatch):
    """SIGTERM (an eviction, or `warmstart run` stopping its tasks) arrives as the second file uploads:
    the claimed version's files are removed on the way out, so not even an invisible half is left."""
    from warmstart.stage import Interrupted

    cfg = config(registry_uri)
    register(cfg, **outputs(1))
    registry = Registry(registry_uri)
    upload, uploaded = type(registry.store).put_file, []

    def interrupted_at_the_second_file(self, key, path):
        if len(uploaded) == 1:
            raise Interrupted(15)
        uploaded.append(key)
        return upload(self, key, path)

    monkeypatch.setattr(type(registry.store), "put_file", interrupted_at_the_second_file)
    with pytest.raises(Interrupted):
        register(cfg, **outputs(2))
    monkeypatch.setattr(type(registry.store), "put_file", upload)
    # Nothing under version 2 (SeaweedFS, unlike S3, keeps the emptied folder as a prefix).
    assert uploaded and registry.store.children("reviews/versions/2") == []
    assert registry.versions("reviews") == [1]
    assert register(cfg, **outputs(3))["version"] in registry.versions("reviews")


def test_the_champion_alias_never_moves_back(registry_uri, outputs):
    cfg = config(registry_uri)
    for salt in (1, 2, 3):
        register(cfg, **outputs(salt))
    registry = Registry(registry_uri)
    assert not registry.move_alias("reviews", "champion", 2)
    assert registry.alias("reviews", "champion") == 3
    assert registry.move_alias("reviews", "champion", 2, only_forward=False)
    assert registry.alias("reviews", "champion") == 2


def _register_rounds(uri: str, runs: list[dict], queue) -> None:
    for run in runs:
        queue.put(register(config(uri), **run)["version"])


def test_two_processes_registering_at_once_lose_nothing(registry_uri, outputs):
    """Two processes, three rounds each, the same model name: distinct, complete versions, champion the newest."""
    runs = [outputs(salt) for salt in range(1, 7)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_register_rounds, args=(registry_uri, runs[i::2], queue)) for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    versions = sorted(queue.get(timeout=10) for _ in range(6))
    assert versions == [1, 2, 3, 4, 5, 6]
    registry = Registry(registry_uri)
    assert registry.versions("reviews") == [1, 2, 3, 4, 5, 6]
    digests = {registry.metadata("reviews", v)["model_sha256"] for v in versions}
    assert len(digests) == 6
    assert registry.alias("reviews", "champion") == 6


def test_server_stopped_during_an_upload_leaves_no_half_version(tmp_path, tiny_random_model, monkeypatch):
    """The S3 server goes down while a version's files are uploading: a clear error, and after the
    server is back the registry shows only complete versions and an unchanged champion."""
    from support.s3 import S3_BUCKET, private_s3

    from warmstart.storage import S3Store, StorageError

    with private_s3(tmp_path / "s3", monkeypatch, AWS_MAX_ATTEMPTS="2") as server:
        uri = f"s3://{S3_BUCKET}/faults"
        register(config(uri), **make_run_outputs(tmp_path / "a", tiny_random_model, 1))

        upload = S3Store.put_file

        def stop_server_then_upload(self, key, path):
            server.stop()
            return upload(self, key, path)

        monkeypatch.setattr(S3Store, "put_file", stop_server_then_upload)
        with pytest.raises(
            StorageError, match=r"does not answer; check storage.endpoint_url \(or AWS_ENDPOINT_URL\)"
        ):
            register(config(uri), **make_run_outputs(tmp_path / "b", tiny_random_model, 2))
        monkeypatch.setattr(S3Store, "put_file", upload)

        server.start()
        registry = Registry(uri)
        assert registry.versions("reviews") == [1]
        assert registry.alias("reviews", "champion") == 1
        assert register(config(uri), **make_run_outputs(tmp_path / "c", tiny_random_model, 3))["version"] == 3


def _cli(*args):
    from support.cli import run_warmstart

    return run_warmstart("registry", *args, timeout=120)


def test_registry_commands_list_show_promote_and_rollback(registry_uri, outputs):
    cfg = config(registry_uri)
    for salt in (1, 2, 3):
        register(cfg, run_id=f"run-{salt}", **outputs(salt))
    listed = _cli("list", "--uri", registry_uri, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["version"], r["champion"]) for r in rows] == [
        ("reviews", 1, False),
        ("reviews", 2, False),
        ("reviews", 3, True),
    ]
    assert rows[0]["gain"]["ci_low"] == 0.05
    table = _cli("list", "--uri", registry_uri)
    assert "champion" in table.stdout and "reviews" in table.stdout

    shown = _cli("show", "--uri", registry_uri, "--name", "reviews", "--version", "2")
    assert shown.returncode == 0 and shown.stdout.startswith("# reviews")
    assert (
        json.loads(_cli("show", "--uri", registry_uri, "--name", "reviews", "--json").stdout)["version"] == 3
    )

    assert _cli("rollback", "--uri", registry_uri, "--name", "reviews").returncode == 0
    assert Registry(registry_uri).alias("reviews", "champion") == 2
    assert _cli("promote", "--uri", registry_uri, "--name", "reviews", "--version", "3").returncode == 0
    assert Registry(registry_uri).alias("reviews", "champion") == 3

    missing = _cli("promote", "--uri", registry_uri, "--name", "reviews", "--version", "9")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"error: reviews has no complete version 9 in {Registry(registry_uri).store.root}; versions: 1, 2, 3"
    )
    assert _cli("rollback", "--uri", registry_uri, "--name", "nothing").returncode == 1


def test_kubeflow_model_registry_call_fits_the_real_client(tmp_path, outputs, monkeypatch):
    """No Model Registry server can run here, so this checks the adapter at its boundary: the arguments
    bind to the installed client's real signatures, and each new version is recorded once with its
    gate result; a server that cannot be reached leaves the warmstart version in place, with a warning."""
    import inspect

    import model_registry

    calls = []
    real = model_registry.ModelRegistry

    class RecordingClient:
        def __init__(self, *args, **kwargs):
            inspect.signature(real.__init__).bind(None, *args, **kwargs)
            calls.append(("init", args, kwargs))

        def register_model(self, *args, **kwargs):
            inspect.signature(real.register_model).bind(None, *args, **kwargs)
            calls.append(("register_model", args, kwargs))
            return type("Registered", (), {"id": "42"})()

    monkeypatch.setattr(model_registry, "ModelRegistry", RecordingClient)
    uri = str(tmp_path / "reg")
    cfg = Config.from_dict(
        {"registry": {"uri": uri, "name": "reviews", "kubeflow_url": "http://mr.kubeflow:8080"}}
    )
    first = outputs(1)
    record = register(cfg, **first)
    assert record["kubeflow_model_registry"] == {
        "recorded": True,
        "server": "http://mr.kubeflow:8080",
        "id": "42",
    }
    (_, init_args, init_kwargs), (_, _, call) = calls
    assert init_args == ("http://mr.kubeflow:8080",) and init_kwargs["is_secure"] is False
    assert call["name"] == "reviews" and call["version"] == "1" and call["uri"] == f"{uri}/reviews/versions/1"
    assert call["model_format_name"] == "huggingface"
    assert call["metadata"]["warmstart_verdict"] == "positive"
    assert call["metadata"]["warmstart_gain_ci_low"] == 0.05
    assert all(isinstance(v, (str, int, float, bool)) for v in call["metadata"].values())
    register(cfg, **first)  # the same model again: already registered, not recorded twice
    assert len(calls) == 2

    monkeypatch.setattr(model_registry, "ModelRegistry", real)
    cfg = Config.from_dict(
        {"registry": {"uri": uri, "name": "reviews", "kubeflow_url": "http://127.0.0.1:9"}}
    )
    unreachable = register(cfg, **outputs(2))
    assert unreachable["version"] == 2 and not unreachable["kubeflow_model_registry"]["recorded"]
    assert Registry(uri).alias("reviews", "champion") == 2
