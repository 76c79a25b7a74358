"""`warmstart serve`: a registered classifier behind KServe's model server (v1 and Open Inference v2, REST).

KServe's stock Hugging Face runtime serves text models only; this serves warmstart's text, image and
audio classifiers alike through the `kserve` package's own `ModelServer` and `Model`, so health, readiness,
model metadata, metrics and error codes are KServe's. Requests that arrive together are batched: rows
queue for up to `max_wait_ms` (or until `max_batch_rows` are waiting) and run as one forward pass.

    POST /v1/models/NAME:predict   {"instances": ["a sentence", ...]}            (text)
                                   {"instances": [{"image": {"b64": "..."}}, ...]}  (images)
                                   {"instances": [{"audio": {"b64": "..."}}, ...]}  (audio: a WAV, FLAC, OGG or MP3 file)
      → {"predictions": [{"label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}, ...]}
    POST /v2/models/NAME/infer     {"inputs": [{"name": "text", "shape": [N], "datatype": "BYTES", "data": [...]}]}
      → outputs "label" (BYTES, [N]) and "probabilities" (FP32, [N, labels])

An image or audio file in a v2 request is a base64 string in JSON, or raw bytes with the binary data
extension. Audio is decoded, made mono, resampled to the model's rate and cut as ingest did for training.
A request the model cannot answer gets a 400 with one line saying why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.serve.model import Classifier


def _kserve():
    from warmstart.kube_models import import_kserve

    kserve = import_kserve()
    if kserve is None:
        from warmstart.errors import ConfigError

        raise ConfigError("warmstart serve needs KServe's model server: pip install 'warmstart[serve]'")
    return kserve


class Batcher:
    """Coalesces concurrent requests into shared forward passes, one at a time, off the event loop."""

    def __init__(self, run: Callable[[list[Any]], np.ndarray], max_rows: int, max_wait_s: float) -> None:
        self.run, self.max_rows, self.max_wait_s = run, max_rows, max_wait_s
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None

    async def __call__(self, rows: list[Any]) -> np.ndarray:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((rows, future))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self.queue.get()]
            count, deadline = len(pending[0][0]), loop.time() + self.max_wait_s
            while count < self.max_rows:
                # What queued while the last pass ran joins this one at once; then wait for more.
                if not self.queue.empty():
                    pending.append(self.queue.get_nowait())
                elif (left := deadline - loop.time()) > 0:
                    try:
                        pending.append(await asyncio.wait_for(self.queue.get(), left))
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                count += len(pending[-1][0])
            rows = [row for request, _ in pending for row in request]
            try:
                probabilities = await asyncio.to_thread(self.run, rows)
            except Exception as err:  # every waiting request hears of it
                for _, future in pending:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for request, future in pending:
                if not future.done():
                    future.set_result(probabilities[start : start + len(request)])
                start += len(request)


def _file_bytes(value: Any, where: str, kind: str) -> bytes:
    """The encoded file (an image or an audio clip) a row sends: {kind: {b64: ...}}, {b64: ...}, a
    base64 string, or raw bytes."""
    if isinstance(value, dict):
        value = value.get(kind, value)
        value = value.get("b64") if isinstance(value, dict) else value
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{where} is not base64: send the {kind} file's bytes as base64") from None
    if not isinstance(value, bytes | bytearray):
        raise _invalid(f"{where} must be an {kind} file as {{'{kind}': {{'b64': '...'}}}} or a base64 string")
    return bytes(value)


def _image_bytes(value: Any, where: str) -> bytes:
    from PIL import Image, UnidentifiedImageError

    value = _file_bytes(value, where, "image")
    try:
        with Image.open(io.BytesIO(value)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise _invalid(f"{where} is not an image PIL can decode (PNG, JPEG, ...)") from None
    return value


def _audio_bytes(value: Any, where: str) -> bytes:
    import soundfile

    value = _file_bytes(value, where, "audio")
    try:
        info = soundfile.info(io.BytesIO(value))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise _invalid(f"{where} is not audio libsndfile can decode (WAV, FLAC, OGG, MP3)") from None
    if info.frames == 0:
        raise _invalid(f"{where} is an audio file with no samples")
    return value


def _text(value: Any, where: str) -> str:
    if isinstance(value, dict) and "text" in value:
        value = value["text"]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise _invalid(f"{where} must be a string or {{'text': '...'}}, not {type(value).__name__}")
    return value


def _invalid(reason: str) -> Exception:
    return _kserve().errors.InvalidInput(reason)


def build_model(name: str, classifier: Classifier, max_batch_rows: int = 64, max_wait_ms: float = 5.0):
    """The KServe Model that answers for `classifier` under `name`."""
    kserve = _kserve()
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class WarmstartClassifier(kserve.Model):
        def __init__(self) -> None:
            super().__init__(name)
            self.classifier = classifier
            self.batcher = Batcher(classifier.probabilities, max_batch_rows, max_wait_ms / 1000)
            self.input_name = classifier.modality if classifier.modality in ("image", "audio") else "text"

        def load(self) -> bool:
            self.ready = True
            return self.ready

        def get_input_types(self) -> list[dict]:
            return [{"name": self.input_name, "datatype": "BYTES", "shape": [-1]}]

        def get_output_types(self) -> list[dict]:
            return [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classifier.labels)]},
            ]

        def _rows(self, values: list[Any], what: str) -> list[Any]:
            if not values:
                raise _invalid(f"{what} is empty: send at least one row")
            parse = {"image": _image_bytes, "audio": _audio_bytes}.get(classifier.modality, _text)
            return [parse(value, f"{what}[{i}]") for i, value in enumerate(values)]

        def _v2_rows(self, request: InferRequest) -> list[Any]:
            inputs = request.inputs
            chosen = [i for i in inputs if i.name == self.input_name] or (inputs if len(inputs) == 1 else [])
            if not chosen:
                names = ", ".join(i.name for i in inputs) or "none"
                raise _invalid(f"the request needs one input named '{self.input_name}' (got: {names})")
            if chosen[0].datatype != "BYTES":
                raise _invalid(f"input '{chosen[0].name}' must have datatype BYTES, not {chosen[0].datatype}")
            data = chosen[0].data
            values = data.tolist() if isinstance(data, np.ndarray) else list(data or [])
            return self._rows(values, f"input '{chosen[0].name}'")

        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            if isinstance(
                payload, bytes | str
            ):  # KServe leaves a body without a JSON content type as it came
                try:
                    payload = json.loads(payload)
                except ValueError:
                    raise _invalid('the request body is not JSON: send {"instances": [...]}') from None
            if isinstance(payload, InferRequest):
                rows = self._v2_rows(payload)
            elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
                rows = self._rows(payload["instances"], "instances")
            else:
                raise _invalid('a v1 request is {"instances": [...]}, one row per instance')
            probabilities = await self.batcher(rows)
            labels = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
            if isinstance(payload, InferRequest):
                return InferResponse(
                    response_id=payload.id or "",
                    model_name=name,
                    model_version=str(classifier.metadata.get("version", "")),
                    infer_outputs=[
                        InferOutput("label", [len(rows)], "BYTES", labels),
                        InferOutput(
                            "probabilities",
                            list(probabilities.shape),
                            "FP32",
                            probabilities.flatten().tolist(),
                        ),
                    ],
                )
            return {
                "predictions": [
                    {
                        "label": label,
                        "probabilities": dict(zip(classifier.labels, map(float, row), strict=True)),
                    }
                    for label, row in zip(labels, probabilities, strict=True)
                ]
            }

    return WarmstartClassifier()


def serve(
    name: str,
    model_dir: Path,
    host: str = "0.0.0.0",
    port: int = 8080,
    batch_size: int = 32,
    max_batch_rows: int = 64,
    max_wait_ms: float = 5.0,
) -> None:
    """Load the version in `model_dir` and answer on host:port until SIGTERM or Ctrl-C."""
    kserve = _kserve()
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    classifier = Classifier(model_dir, batch_size)
    model = build_model(name, classifier, max_batch_rows, max_wait_ms)
    model.load()
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1)
    server.register_model(model)
    # ModelServer.start listens on 0.0.0.0 only; its REST server is started here so --host chooses.
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension, port)
    rest.config.host = host
    version = classifier.metadata.get("version", "?")
    print(
        f"serve: {name} version {version} ({classifier.modality}, labels {', '.join(classifier.labels)}) "
        f"on http://{host}:{port}: POST /v1/models/{name}:predict, /v2/models/{name}/infer",
        flush=True,
    )
    server.setup_event_loop()
    asyncio.run(rest.start())
