"""`warmstart serve`: a registered version behind the real KServe model server, on loopback.

A tiny text model and a tiny image model are fine-tuned for real and registered; the server answers the
v1 and v2 protocols with the labels and probabilities that finetune's offline predictions (the ones the
gate judges) have for the same test rows. Bad requests get a 400 with one line; weights that are not
the registered ones are refused before they are loaded.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import numpy as np
import pytest
from support.serving import WARMSTART, get, post, serving, trained_and_registered
from support.stages import tiny_config, tiny_image_config

from warmstart.deploy import smoke_inputs
from warmstart.registry import Registry


@pytest.fixture(scope="module")
def text_version(tmp_path_factory, synthetic_csv, tiny_pretrained_model):
    work = tmp_path_factory.mktemp("serve-text")
    return trained_and_registered(tiny_config(synthetic_csv, tiny_pretrained_model, work / "registry"), work)


@pytest.fixture(scope="module")
def text_server(text_version):
    work, _ = text_version
    with serving("--registry", str(work / "registry"), "--name", "tiny", log=work / "serve.log") as url:
        yield url


def assert_same_as_offline(labels, probabilities, offline, label_names):
    """`offline`: finetune's probabilities for the same rows (predictions.parquet, what the gate judged)."""
    assert labels == [label_names[i] for i in offline.argmax(axis=1)]
    np.testing.assert_allclose(probabilities, offline, atol=1e-4)


def test_text_v1_and_v2_answer_what_the_gate_judged(text_version, text_server):
    work, record = text_version
    texts, offline = smoke_inputs(work / "data", work / "evaluation", count=1_000_000)
    label_names = json.loads((work / "data" / "data_card.json").read_text())["label_names"]

    status, v1 = post(f"{text_server}/v1/models/tiny:predict", {"instances": texts})
    assert status == 200
    assert_same_as_offline(
        [p["label"] for p in v1["predictions"]],
        [[p["probabilities"][n] for n in label_names] for p in v1["predictions"]],
        offline,
        label_names,
    )
    request = {
        "id": "r1",
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}],
    }
    status, v2 = post(f"{text_server}/v2/models/tiny/infer", request)
    assert status == 200 and v2["id"] == "r1" and v2["model_name"] == "tiny"
    outputs = {output["name"]: output for output in v2["outputs"]}
    assert outputs["probabilities"]["shape"] == [len(texts), len(label_names)]
    assert_same_as_offline(
        outputs["label"]["data"],
        np.asarray(outputs["probabilities"]["data"]).reshape(len(texts), -1),
        offline,
        label_names,
    )


def test_the_server_answers_health_readiness_and_metadata(text_server, text_version):
    assert get(f"{text_server}/v2/health/live") == 200
    assert get(f"{text_server}/v1/models/tiny") == 200
    assert get(f"{text_server}/v2/models/tiny/ready") == 200
    assert get(f"{text_server}/v2/models/other/ready") == 404


@pytest.mark.parametrize(
    "path, body, reason",
    [
        (":predict", {"rows": ["x"]}, 'a v1 request is {"instances": [...]}'),
        (":predict", {"instances": []}, "instances is empty"),
        (":predict", {"instances": ["fine", 3]}, "instances[1] must be a string"),
        (
            "/infer",
            {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            "input 'text' must have datatype BYTES, not FP32",
        ),
        (
            "/infer",
            {
                "inputs": [
                    {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                    {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["y"]},
                ]
            },
            "one input named 'text' (got: a, b)",
        ),
    ],
)
def test_a_bad_request_gets_a_400_with_one_line(text_server, path, body, reason):
    url = (
        f"{text_server}/v1/models/tiny{path}"
        if path.startswith(":")
        else f"{text_server}/v2/models/tiny{path}"
    )
    status, answer = post(url, body)
    assert status == 400, answer
    assert reason in answer["error"] and "\n" not in answer["error"]


def test_a_body_sent_as_curl_sends_it_without_a_json_content_type_is_read(text_server):
    import urllib.error
    import urllib.request

    url = f"{text_server}/v1/models/tiny:predict"
    request = urllib.request.Request(url, data=b'{"instances": ["fine"]}')  # form-encoded, as `curl -d` says
    with urllib.request.urlopen(request, timeout=60) as response:
        assert len(json.loads(response.read())["predictions"]) == 1
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"instances=fine"), timeout=60)
    except urllib.error.HTTPError as err:
        assert err.code == 400
        assert json.loads(err.read())["error"] == 'the request body is not JSON: send {"instances": [...]}'
    else:
        raise AssertionError("a body that is not JSON was answered")
    status, answer = post(url, b"{not json")  # with the JSON content type, KServe's own 400
    assert status == 400 and "Unrecognized request format" in answer["error"] and "\n" not in answer["error"]


def test_an_unknown_model_is_a_404(text_server):
    status, _ = post(f"{text_server}/v1/models/nope:predict", {"instances": ["x"]})
    assert status == 404


def test_images_are_served_as_the_gate_judged_them(tmp_path, image_folder, tiny_vision_model):
    work, record = trained_and_registered(
        tiny_image_config(image_folder, tiny_vision_model, tmp_path / "r"), tmp_path
    )
    images, offline = smoke_inputs(work / "data", work / "evaluation", count=1_000_000)
    label_names = json.loads((work / "data" / "data_card.json").read_text())["label_names"]
    version_dir = Registry(str(tmp_path / "r")).version_uri("tiny", record["version"])
    # A version's directory as KServe's storage initializer leaves it in /mnt/models.
    with serving("--model-dir", version_dir, log=tmp_path / "serve.log") as url:
        status, v1 = post(
            f"{url}/v1/models/tiny:predict", {"instances": [{"image": {"b64": b}} for b in images]}
        )
        assert status == 200, v1
        assert_same_as_offline(
            [p["label"] for p in v1["predictions"]],
            [[p["probabilities"][n] for n in label_names] for p in v1["predictions"]],
            offline,
            label_names,
        )
        request = {"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES", "data": images}]}
        status, v2 = post(f"{url}/v2/models/tiny/infer", request)
        assert status == 200 and next(o for o in v2["outputs"] if o["name"] == "label")["data"] == [
            p["label"] for p in v1["predictions"]
        ]
        for bad, reason in (("%%%", "is not base64"), ("aGVsbG8=", "is not an image PIL can decode")):
            status, answer = post(f"{url}/v1/models/tiny:predict", {"instances": [images[0], bad]})
            assert status == 400 and f"instances[1] {reason}" in answer["error"]


def test_weights_that_are_not_the_registered_ones_are_refused(tmp_path, text_version):
    work, record = text_version
    version_dir = tmp_path / "version"
    shutil.copytree(Registry(str(work / "registry")).version_uri("tiny", record["version"]), version_dir)
    weights = version_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")

    def serve(*args):
        return subprocess.run(
            [WARMSTART, "serve", *args, "--port", "1"], capture_output=True, text=True, timeout=120
        )

    refused = serve("--model-dir", str(version_dir))
    assert refused.returncode == 1
    assert "refusing to serve weights the gate did not judge" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    weights.unlink()
    (version_dir / "pytorch_model.bin").write_bytes(b"pickle")
    refused = serve("--model-dir", str(version_dir))
    assert refused.returncode == 1 and "only pickled weights: pytorch_model.bin" in refused.stderr
    assert "has no champion" in serve("--registry", str(tmp_path / "empty"), "--name", "tiny").stderr
    assert "pass --registry with --name, or --model-dir" in serve().stderr


def test_concurrent_requests_share_forward_passes():
    from warmstart.serve.server import Batcher

    calls = []

    def run(rows):
        calls.append(len(rows))
        return np.asarray([[float(r), 1 - float(r)] for r in rows])

    async def main():
        batcher = Batcher(run, max_rows=64, max_wait_s=0.05)
        return await asyncio.gather(*(batcher([i / 10, i / 20]) for i in range(5)))

    results = asyncio.run(main())
    assert sum(calls) == 10 and len(calls) < 5
    for i, result in enumerate(results):
        np.testing.assert_allclose(result[:, 0], [i / 10, i / 20])
