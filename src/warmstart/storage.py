"""Turn a data or model URI into a local path: plain paths, file://, and pkg://PACKAGE/PATH.

Remote schemes (s3://, http(s)://, hf://) are resolved by the stage that owns them; this module
names the schemes so every stage rejects an unknown one with the same sentence.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from urllib.parse import urlparse

from warmstart.errors import WarmstartError

LOCAL_SCHEMES = ("", "file", "pkg")


def scheme_of(uri: str) -> str:
    """The URI's scheme, '' for a plain path (Windows drive letters are not schemes)."""
    parsed = urlparse(uri)
    return parsed.scheme.lower() if len(parsed.scheme) > 1 else ""


def resolve_local(uri: str, what: str, supported: tuple[str, ...] = LOCAL_SCHEMES) -> Path:
    """Resolve a local-kind URI to an existing path, or raise an error naming the URI and the fix."""
    if not uri or not uri.strip():
        raise WarmstartError(f"{what} is empty; set it to a path or URI")
    scheme = scheme_of(uri)
    if scheme not in supported:
        raise WarmstartError(
            f"{what} '{uri}': unsupported scheme '{scheme}://'; use one of "
            + ", ".join(f"{s}://" if s else "a local path" for s in supported)
        )
    if scheme == "pkg":
        path = _package_path(uri, what)
    elif scheme == "file":
        path = Path(urlparse(uri).path)
    else:
        path = Path(uri).expanduser()
    if not path.exists():
        raise WarmstartError(f"{what} '{uri}': {path} does not exist; check the path")
    return path.resolve()


def _package_path(uri: str, what: str) -> Path:
    parsed = urlparse(uri)
    package, subpath = parsed.netloc, parsed.path.lstrip("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise WarmstartError(
            f"{what} '{uri}': Python package '{package}' is not installed; "
            f"pip install it (its distribution name may use '-' for '_')"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = (root / subpath).resolve()
    if root.resolve() not in (path, *path.parents):
        raise WarmstartError(f"{what} '{uri}': the path leaves the package directory")
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
