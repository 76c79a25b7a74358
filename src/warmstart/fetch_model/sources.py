"""fetch_model: resolve a pretrained-model URI into a local directory of safe files plus a manifest.

Sources: a local directory, `pkg://PACKAGE/DIR` (weights shipped in an installed Python package),
`s3://BUCKET/PREFIX` (a model directory in object storage), `hf://ORG/NAME@REVISION` (the Hugging
Face Hub through huggingface_hub, which honours HF_HOME and HF_HUB_OFFLINE) and
`registry://NAME@champion` (or `@latest`, `@VERSION`: a model this registry holds, so yesterday's
fine-tuned model can be today's starting point). A local, s3:// or http(s):// `.tar.gz` or `.zip`
(SageMaker's model.tar.gz, say) is unpacked after every entry is checked. Only safetensors weights are accepted; pickled weights are never copied or loaded,
and a model that needs custom code (`auto_map`) is refused because trust_remote_code is never used.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from safetensors import safe_open

from warmstart.artifacts import MANIFEST_FILE
from warmstart.config import ModelConfig
from warmstart.errors import ModelError, WarmstartError, naming
from warmstart.storage import (
    check_readable,
    fetch_file,
    fetch_tree,
    is_archive,
    resolve_local,
    scheme_of,
    sha256_file,
    unpack_archive,
)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")
# Config, tokenizer and card files a sequence classifier needs; everything else stays behind.
KEPT_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".md", ".tiktoken")
HF_PATTERNS = ["*.safetensors", "*.json", "*.txt", "*.model", "README.md"]
REGISTRY_SOURCE = re.compile(r"registry://([a-z0-9][a-z0-9._-]*)@(champion|latest|[0-9]+)")


def _download_from_hub(uri: str, what: str) -> tuple[Path, str]:
    """hf://ORG/NAME[@REVISION] → the snapshot directory and the commit it resolved to."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = _hub_repo(uri, what)
    try:
        path = Path(snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=HF_PATTERNS))
    except LocalEntryNotFoundError:
        raise ModelError(
            f"{what} '{uri}': not in the local Hugging Face cache and the Hub cannot be reached; "
            f"pre-populate HF_HOME or allow network access"
        ) from None
    except HfHubHTTPError as err:
        raise ModelError(
            f"{what} '{uri}': the Hub refused the download ({err}); check ORG/NAME@REVISION"
        ) from None
    return path, path.name  # snapshots/<commit>/


def _hub_repo(uri: str, what: str) -> tuple[str, str]:
    """hf://ORG/NAME[@REVISION] → (ORG/NAME, REVISION or '')."""
    parsed = urlparse(uri)
    repo, _, revision = f"{parsed.netloc}{parsed.path}".partition("@")
    if repo.count("/") != 1:
        raise ModelError(f"{what} '{uri}': expected hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repo, revision


def _locate_on_hub(uri: str, what: str) -> None:
    """The model is in the local Hugging Face cache, or the Hub has it (a HEAD of its config.json)."""
    from huggingface_hub import constants, file_exists, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    repo, revision = _hub_repo(uri, what)
    if isinstance(try_to_load_from_cache(repo, "config.json", revision=revision or None), str):
        return
    unreachable = f"{what} '{uri}': not in the local Hugging Face cache (HF_HOME) and "
    if constants.HF_HUB_OFFLINE:
        raise ModelError(unreachable + "HF_HUB_OFFLINE is set; pre-populate HF_HOME or allow network access")
    try:
        found = file_exists(repo, "config.json", revision=revision or None)
    except HfHubHTTPError as err:
        raise ModelError(
            f"{what} '{uri}': the Hub refused ({str(err).splitlines()[0]}); check ORG/NAME@REVISION"
        ) from None
    except OSError as err:  # no route to the Hub: requests' and httpx's errors are OSErrors
        raise ModelError(
            unreachable + f"the Hub cannot be reached ({type(err).__name__}); pre-populate HF_HOME or allow "
            f"network access"
        ) from None
    if not found:
        raise ModelError(f"{what} '{uri}': the Hub has no config.json for {repo}; check ORG/NAME@REVISION")


def locate(uri: str, registry_uri: str = "", what: str = "model.source") -> None:
    """Check that the model at `uri` can be fetched, in seconds and without fetching it: the directory
    holds a config.json, the archive or S3 object is there, the registry has the version, the Hub or
    the local cache has the model. `fetch` checks the files themselves."""
    scheme = scheme_of(uri)
    try:
        if scheme == "hf":
            _locate_on_hub(uri, what)
        elif scheme == "registry":
            _registry_version(uri, registry_uri, what)
        elif is_archive(urlparse(uri).path if scheme else uri):
            check_readable(uri, what)
        elif scheme == "s3":
            check_readable(f"{uri.rstrip('/')}/config.json", what)
        elif not (_local_model_dir(uri, what) / "config.json").is_file():
            raise ModelError(
                f"{what} '{uri}': no config.json there; point it at a Hugging Face model directory"
            )
    except WarmstartError as err:
        raise naming(ModelError, what, err) from None


def _package_version(uri: str) -> str | None:
    package = urlparse(uri).netloc
    for dist in metadata.packages_distributions().get(package, []):
        return f"{dist}=={metadata.version(dist)}"
    return None


def _license(model_dir: Path) -> str | None:
    card = model_dir / "README.md"
    if card.is_file():
        front = card.read_text(encoding="utf-8", errors="replace").split("---")
        if len(front) >= 3:
            match = re.search(r"^license:\s*(\S+)", front[1], re.MULTILINE)
            if match:
                return match.group(1)
    return None


def check_model_dir(model_dir: Path, uri: str, what: str = "model.source") -> list[Path]:
    """The safetensors files of a model directory, after refusing what must never be loaded."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"{what} '{uri}': no config.json in {model_dir}; point it at a Hugging Face model directory"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{what} '{uri}': config.json is not valid JSON ({err})") from None
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise ModelError(
            f"{what} '{uri}': the model needs its own Python code (auto_map in config.json); "
            f"warmstart never runs trust_remote_code, pick a model supported by transformers itself"
        )
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        found = f" (found only {', '.join(pickled)})" if pickled else ""
        raise ModelError(
            f"{what} '{uri}': no *.safetensors weights in {model_dir}{found}; pickled weights can run "
            f"arbitrary code when loaded and are refused; convert the model to safetensors"
        )
    for weight in weights:
        try:
            with safe_open(str(weight), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error types for truncated or corrupt headers
            raise ModelError(
                f"{what} '{uri}': {weight.name} is not a readable safetensors file ({err}); download it again"
            ) from None
    return weights


def parameter_count(weights: list[Path]) -> int:
    """Parameters counted from the safetensors headers, without loading any tensor."""
    total = 0
    for weight in weights:
        with safe_open(str(weight), framework="pt") as handle:
            for key in handle.keys():
                count = 1
                for dim in handle.get_slice(key).get_shape():
                    count *= dim
                total += count
    return total


def fetch_model(cfg: ModelConfig, output_dir: str | Path, registry_uri: str = "") -> dict[str, Any]:
    """Copy the model named by `cfg.source` into `output_dir` (safe files only) and write its manifest.

    `registry_uri` is where `registry://NAME@...` sources are looked up (the run's registry.uri).
    """
    return fetch(cfg.source, output_dir, registry_uri)


def fetch(
    uri: str, output_dir: str | Path, registry_uri: str = "", what: str = "model.source"
) -> dict[str, Any]:
    """Copy the model at `uri` into `output_dir` and write its manifest; `what` names the setting
    the URI came from, in errors."""
    scheme = scheme_of(uri)
    with tempfile.TemporaryDirectory(prefix="warmstart-fetch-") as scratch:
        if scheme == "hf":
            source_dir, revision = _download_from_hub(uri, what)
        elif is_archive(urlparse(uri).path if scheme else uri):
            source_dir, revision = _unpacked(uri, Path(scratch), what), None
        elif scheme == "s3":
            try:
                source_dir, revision = fetch_tree(uri, Path(scratch), KEPT_SUFFIXES), None
            except WarmstartError as err:
                raise ModelError(f"{what}: {err}") from None
        elif scheme == "registry":
            source_dir, revision = _from_registry(uri, registry_uri, Path(scratch), what)
        else:
            source_dir, revision = (
                _local_model_dir(uri, what),
                (_package_version(uri) if scheme == "pkg" else None),
            )
        return _copy_safe_files(source_dir, uri, revision, Path(output_dir), what)


def _from_registry(uri: str, registry_uri: str, target: Path, what: str) -> tuple[Path, str]:
    """registry://NAME@champion, @latest or @VERSION → that version's model files, and which version."""
    registry, name, version = _registry_version(uri, registry_uri, what)
    return registry.download_version(name, version, target), f"{name} version {version}"


def _registry_version(uri: str, registry_uri: str, what: str) -> tuple[Any, str, int]:
    """registry://NAME@WHICH → the registry, NAME and the version WHICH names there."""
    from warmstart.registry import Registry

    match = REGISTRY_SOURCE.fullmatch(uri)
    if not match:
        raise ModelError(
            f"{what} '{uri}': expected registry://NAME@champion, registry://NAME@latest or registry://NAME@VERSION"
        )
    if not registry_uri:
        raise ModelError(
            f"{what} '{uri}' names a registered model, but registry.uri is empty; set registry.uri"
        )
    name, which = match.groups()
    registry = Registry(registry_uri)
    versions = registry.versions(name)
    if which == "champion":
        version = registry.alias(name, "champion")
    elif which == "latest":
        version = versions[-1] if versions else None
    else:
        version = int(which) if int(which) in versions else None
    if version is None:
        listed = ", ".join(map(str, versions)) or "none"
        raise ModelError(
            f"{what} '{uri}': {name} has no {which if which in ('champion', 'latest') else 'version ' + which} "
            f"in {registry_uri} (versions: {listed}); see `warmstart registry list`"
        )
    return registry, name, version


def _unpacked(uri: str, scratch: Path, what: str) -> Path:
    """A model shipped as one archive (model.tar.gz, as SageMaker writes it, or a .zip), local or
    remote: downloaded, checked entry by entry and unpacked."""
    try:
        archive = fetch_file(uri, what, scratch)
        return unpack_archive(archive, scratch / "unpacked", uri)
    except WarmstartError as err:
        raise naming(ModelError, what, err) from None


def _local_model_dir(uri: str, what: str) -> Path:
    try:
        source_dir = resolve_local(uri, what)
    except WarmstartError as err:
        raise ModelError(str(err)) from None
    if not source_dir.is_dir():
        raise ModelError(f"{what} '{uri}' is a file; point it at the model's directory")
    return source_dir


def _copy_safe_files(
    source_dir: Path, uri: str, revision: str | None, output_dir: Path, what: str
) -> dict[str, Any]:
    """Check the model, copy its safe files to `output_dir` and write the manifest."""
    weights = check_model_dir(source_dir, uri, what)

    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(source_dir.iterdir()):
        if not path.is_file() or path.suffix not in KEPT_SUFFIXES:
            continue
        shutil.copyfile(path, output_dir / path.name)
        files[path.name] = {"sha256": sha256_file(output_dir / path.name), "bytes": path.stat().st_size}
    config = json.loads((source_dir / "config.json").read_text())
    manifest = {
        "source": uri,
        "revision": revision,
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "model_type": config.get("model_type"),
        "parameters": parameter_count(weights),
        "license": _license(source_dir),
        "files": files,
    }
    (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest
