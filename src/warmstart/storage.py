"""Storage for every stage: local paths, file://, pkg://PACKAGE/PATH, s3://BUCKET/KEY and http(s)://.

S3 goes through boto3 against any S3-compatible server (AWS, MinIO, Ceph, SeaweedFS). The endpoint
comes from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), credentials from the environment or a
mounted secret, never from the config, and they are never logged. Requests retry with backoff on
5xx, throttling and timeouts (botocore's standard retry mode); large files go up and down in
multipart parts. Every file written to S3 carries its sha256, which is checked again on download.

`Store` is the small set of object operations the registry needs (conditional create, compare-and-
swap replace, listing) with one implementation per backend, so the registry's logic exists once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib.util
import os
import posixpath
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from warmstart.errors import WarmstartError

LOCAL_SCHEMES = ("", "file", "pkg")
REMOTE_SCHEMES = ("s3", "http", "https")
SHA256_METADATA = "sha256"


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


class StorageError(WarmstartError):
    """An object store or URL could not be read or written; says which URI and what to check."""


@functools.cache
def s3_client(quick: bool = False) -> Any:
    """One boto3 S3 client per process: endpoint and credentials from the environment, with retries.

    `quick`: two attempts and short timeouts, for a check that must answer in seconds (the preflight)."""
    import boto3
    from botocore.config import Config as BotoConfig

    attempts = 2 if quick else int(os.environ.get("AWS_MAX_ATTEMPTS", "8"))
    # A session of its own: the default session keeps the first credentials it found, and a client
    # made after cache_clear() must see the environment as it is now.
    return boto3.session.Session().client(
        "s3",
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=3 if quick else 10,
            read_timeout=15 if quick else 120,
            # S3-compatible servers on their own endpoint want path-style URLs; AWS itself chooses.
            s3={"addressing_style": "path" if _custom_endpoint() else "auto"},
        ),
    )


def _custom_endpoint() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))


def split_s3(uri: str) -> tuple[str, str]:
    """s3://BUCKET/KEY → (BUCKET, KEY)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"'{uri}' is not an s3://BUCKET/KEY URI")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_error(err: Exception, uri: str, action: str) -> StorageError:
    """A boto3 failure as one sentence that names the URI and what to check (never a credential)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(err, NoCredentialsError):
        return StorageError(
            f"cannot {action} '{uri}': no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            f"(or mount the credentials secret)"
        )
    if isinstance(err, EndpointConnectionError):
        return StorageError(
            f"cannot {action} '{uri}': the S3 endpoint {err.kwargs.get('endpoint_url', '')} does not answer; "
            f"check storage.endpoint_url (or AWS_ENDPOINT_URL) and that the server is up"
        )
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return StorageError(
                f"cannot {action} '{uri}': the bucket does not exist; create it or fix the URI"
            )
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return StorageError(f"cannot {action} '{uri}': no such object; check the key")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or status == 403:
            return StorageError(
                f"cannot {action} '{uri}': access denied ({code}); check the S3 credentials "
                f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's permissions"
            )
        return StorageError(f"cannot {action} '{uri}': the S3 server answered {code or status}")
    return StorageError(f"cannot {action} '{uri}': {type(err).__name__}: {err}")


def _s3_call(uri: str, action: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(*args, **kwargs)
    except (BotoCoreError, ClientError) as err:
        raise s3_error(err, uri, action) from None


def check_writable(uri: str, what: str) -> None:
    """Check that the run can write under the directory or s3:// prefix `uri` (named by the setting
    `what` in errors), by writing a probe and removing it: a directory is created where missing (and
    removed again); S3 must answer, know the credentials and have the bucket."""
    if scheme_of(uri) == "s3":
        _check_s3_writable(uri, what)
        return
    if scheme_of(uri) not in ("", "file"):
        raise StorageError(f"{what} '{uri}': use a directory or s3://BUCKET/PREFIX")
    path = Path(uri.removeprefix("file://")).expanduser().absolute()
    existing = path
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise StorageError(
            f"{what} '{uri}' {where}, not a directory; set it to a directory (created when missing) "
            f"or s3://BUCKET/PREFIX"
        )
    created: list[Path] = []
    try:
        for folder in reversed([path, *path.parents][: len(path.parents) - len(existing.parents)]):
            folder.mkdir()
            created.append(folder)
        probe = path / f".warmstart-probe-{os.getpid()}-{os.urandom(4).hex()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as err:
        raise StorageError(_unwritable(uri, what, err)) from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _unwritable(uri: str, what: str, err: OSError) -> str:
    where = err.filename or uri
    if err.errno in (errno.EACCES, errno.EPERM):
        user = f"user {os.getuid()}" if hasattr(os, "getuid") else "this user"
        return (
            f"{what} '{uri}': cannot write in {Path(where).parent if err.filename else where} (permission "
            f"denied for {user}); make it writable, or set {what} to a directory you can write"
        )
    if err.errno == errno.EROFS:
        return f"{what} '{uri}' is on a read-only filesystem; set {what} to a writable directory"
    return (
        f"{what} '{uri}': cannot write in {where}: {err.strerror or err}; set {what} to a writable directory"
    )


def _check_s3_writable(uri: str, what: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri)
    client = s3_client(quick=True)
    key = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    key += f".warmstart-probe-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        client.head_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=b"")
        client.delete_object(Bucket=bucket, Key=key)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(
                f"{what} '{uri}': the bucket '{bucket}' does not exist on "
                f"{client.meta.endpoint_url}; create it, or fix the URI or storage.endpoint_url"
            ) from None
        raise StorageError(f"{what}: {s3_error(err, uri, 'write to')}") from None
    except BotoCoreError as err:
        raise StorageError(f"{what}: {s3_error(err, uri, 'write to')}") from None


def check_readable(uri: str, what: str) -> None:
    """Check that the file at `uri` is there, without downloading it (s3: its head; http(s): a HEAD)."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        bucket, key = split_s3(uri)
        _s3_call(uri, "read", s3_client(quick=True).head_object, Bucket=bucket, Key=key)
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(urllib.request.Request(uri, method="HEAD"), timeout=10):
                pass
        except urllib.error.HTTPError as err:
            if err.code != 405:  # a server that answers GET only
                raise StorageError(f"{what} '{uri}': the server answered {err.code} {err.reason}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            raise StorageError(f"{what} '{uri}': {getattr(err, 'reason', err)}") from None
    else:
        resolve_local(uri, what, LOCAL_SCHEMES + REMOTE_SCHEMES)


def download_s3_file(uri: str, target: Path) -> Path:
    """Download one object (multipart, retried) and verify the sha256 recorded when it was written."""
    bucket, key = split_s3(uri)
    client = s3_client()
    head = _s3_call(uri, "read", client.head_object, Bucket=bucket, Key=key)
    target.parent.mkdir(parents=True, exist_ok=True)
    _s3_call(uri, "download", client.download_file, bucket, key, str(target))
    expected = head.get("Metadata", {}).get(SHA256_METADATA)
    if expected and sha256_file(target) != expected:
        target.unlink(missing_ok=True)
        raise StorageError(
            f"'{uri}' changed or was corrupted in transit (sha256 mismatch); download it again"
        )
    return target


def upload_s3_file(path: Path, uri: str, extra: dict[str, str] | None = None) -> None:
    """Upload one file (multipart when large) with its sha256 as object metadata."""
    bucket, key = split_s3(uri)
    metadata = {SHA256_METADATA: sha256_file(path), **(extra or {})}
    _s3_call(uri, "write", s3_client().upload_file, str(path), bucket, key, ExtraArgs={"Metadata": metadata})


def list_s3(uri: str) -> list[str]:
    """Keys under an s3:// prefix, relative to it."""
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    paginator = s3_client().get_paginator("list_objects_v2")
    keys = []
    for page in _s3_call(uri, "list", lambda: list(paginator.paginate(Bucket=bucket, Prefix=prefix))):
        keys += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
    return keys


def download_http(uri: str, target: Path) -> Path:
    """Stream an http(s) download to `target`; an HTML page where data was expected is refused."""
    try:
        with urllib.request.urlopen(uri, timeout=60) as response, open(target, "wb") as out:
            if "text/html" in response.headers.get("Content-Type", ""):
                raise StorageError(
                    f"'{uri}' returned an HTML page, not a data file; check the URL (a login or error page?)"
                )
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as err:
        raise StorageError(f"cannot download '{uri}': the server answered {err.code} {err.reason}") from None
    except (urllib.error.URLError, TimeoutError) as err:
        raise StorageError(f"cannot download '{uri}': {getattr(err, 'reason', err)}") from None
    return target


def fetch_file(uri: str, what: str, workdir: Path) -> Path:
    """A local path holding the file at `uri`; remote files are downloaded into `workdir` first."""
    scheme = scheme_of(uri)
    if scheme in LOCAL_SCHEMES:
        return resolve_local(uri, what)
    if scheme not in REMOTE_SCHEMES:
        resolve_local(uri, what, LOCAL_SCHEMES + REMOTE_SCHEMES)  # raises the unsupported-scheme error
    name = PurePosixPath(urlparse(uri).path).name or "download"
    target = Path(tempfile.mkdtemp(prefix="fetch-", dir=workdir)) / name
    try:
        return download_s3_file(uri, target) if scheme == "s3" else download_http(uri, target)
    except StorageError as err:
        raise StorageError(f"{what}: {err}") from None


def fetch_tree(uri: str, target: Path, suffixes: tuple[str, ...] = ()) -> Path:
    """Download the objects under an s3:// prefix into `target`, keeping relative paths.

    With `suffixes`, only files with those endings come down (the rest are never written locally).
    """
    keys = list_s3(uri)
    if not keys:
        raise StorageError(f"'{uri}' holds no objects; check the bucket and prefix")
    for relative in keys:
        if relative.endswith("/") or (suffixes and not relative.endswith(suffixes)):
            continue
        destination = (target / relative).resolve()
        if target.resolve() not in destination.parents:
            raise StorageError(f"'{uri}': object key '{relative}' would leave the target directory")
        download_s3_file(f"{uri.rstrip('/')}/{relative}", destination)
    return target


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_archive(archive: Path, target: Path, uri: str) -> Path:
    """Unpack a .zip or .tar(.gz/.bz2/.xz) into `target` and return the folder that holds its
    content (descending through single top-level folders).

    Every entry is checked before anything is written: an absolute path, a `..` component, a link
    that leads outside `target` (or any link in a zip, which cannot hold one safely), or a device
    or pipe refuses the whole archive.
    """
    import tarfile
    import zipfile

    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for entry in bundle.infolist():
                    _check_entry(entry.filename, uri)
                    if (entry.external_attr >> 16) & 0o170000 == 0o120000:
                        _refuse(
                            uri, entry.filename, "is a symbolic link; a zip may hold files and folders only"
                        )
                bundle.extractall(target)
        else:
            with tarfile.open(archive) as bundle:
                members = bundle.getmembers()
                for member in members:
                    _check_entry(member.name, uri)
                    if member.issym() or member.islnk():
                        # A symlink's target is relative to its folder, a hard link's to the archive root.
                        base = posixpath.dirname(member.name) if member.issym() else ""
                        lands = posixpath.normpath(posixpath.join(base, member.linkname))
                        if lands.startswith("/") or lands == ".." or lands.startswith("../"):
                            _refuse(uri, member.name, f"links to '{member.linkname}', outside the archive")
                    elif not (member.isfile() or member.isdir()):
                        _refuse(uri, member.name, "is a device, pipe or other special file")
                if hasattr(tarfile, "data_filter"):
                    bundle.extractall(target, members, filter="data")  # the same rules, checked again
                else:  # pragma: no cover - Python without the extraction filters (before 3.10.12)
                    bundle.extractall(target, members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise StorageError(f"'{uri}' is not a readable archive ({err}); check the file") from None
    except OSError as err:
        raise StorageError(f"'{uri}' could not be unpacked into {target}: {err.strerror or err}") from None
    root = target
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
            continue
        if not entries:
            raise StorageError(f"'{uri}' is an empty archive")
        return root


def _check_entry(name: str, uri: str, why: str = "") -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")) or ".." in path.parts:
        _refuse(
            uri, name, why or "has an absolute path or '..'; it would be written outside the target folder"
        )


def _refuse(uri: str, entry: str, why: str) -> None:
    raise StorageError(f"'{uri}' was refused: its entry '{entry}' {why}; nothing was unpacked")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Store:
    """Object operations over one storage root, with keys as '/'-separated relative paths.

    `create` writes only if the key does not exist; `replace` writes only if the key still holds the
    version `tag` that `read` returned (None: only if absent). Both return False on a lost race.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def read(self, key: str) -> tuple[bytes, str] | None:
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        raise NotImplementedError

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        raise NotImplementedError

    def put_file(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def get_file(self, key: str, target: Path) -> Path:
        raise NotImplementedError

    def children(self, prefix: str) -> list[str]:
        """Names directly under `prefix/` (objects and sub-prefixes alike)."""
        raise NotImplementedError

    def delete(self, prefix: str) -> None:
        """Remove `prefix` and everything under it (nothing happens when it does not exist)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.read(key) is not None


class LocalStore(Store):
    """A directory on a local or mounted filesystem; O_EXCL and a file lock give the conditions."""

    def __init__(self, root: str) -> None:
        path = Path(root.removeprefix("file://")).expanduser().resolve()
        super().__init__(str(path))
        self.path = path

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = (self.path / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """A full disk (or quota, or file-size limit) as one StorageError naming where."""
        try:
            yield
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            raise StorageError(
                f"cannot write {self.uri(key)}: {os.strerror(err.errno)}; free space there and run again "
                f"(what was written before is intact)"
            ) from None

    def _temp_copy(self, target: Path, data: bytes) -> str:
        """`data` in a hidden file beside `target`, on disk (fsync) before anyone can see it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        self._fill(handle, data, Path(temp))
        return temp

    @staticmethod
    def _fill(handle: int, data: bytes, path: Path) -> None:
        """Write `data` through the open file `handle`, on disk (fsync); on failure `path` is removed."""
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _write(self, target: Path, data: bytes) -> None:
        temp = self._temp_copy(target, data)
        try:
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def create(self, key: str, data: bytes) -> bool:
        target = self.path / key
        with self._writing(key):
            temp = self._temp_copy(target, data)
            try:
                os.link(temp, target)  # only if absent, and only ever whole: a full disk leaves nothing
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                return self._create_in_place(target, data)  # a filesystem without hard links
            finally:
                os.unlink(temp)
        return True

    @staticmethod
    def _create_in_place(target: Path, data: bytes) -> bool:
        try:
            handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        LocalStore._fill(handle, data, target)
        return True

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read(key)
            if (current[1] if current else None) != tag:
                return False
            with self._writing(key):
                self._write(target, data)
            return True

    def put_file(self, key: str, path: Path) -> None:
        target = self.path / key
        with self._writing(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(path, target)  # same filesystem: no copy (callers never modify a file they put)
            except OSError:
                try:
                    shutil.copyfile(path, target)
                except BaseException:
                    target.unlink(missing_ok=True)  # never a partial object under a real key
                    raise

    def get_file(self, key: str, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path / key, target)
        return target

    def delete(self, prefix: str) -> None:
        target = self.path / prefix
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def children(self, prefix: str) -> list[str]:
        folder = self.path / prefix
        return (
            sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
        )


class S3Store(Store):
    """A bucket and prefix on an S3-compatible server; conditional PutObject gives the conditions."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.bucket, prefix = split_s3(self.root)
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def read(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            response = s3_client().get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise s3_error(err, self.uri(key), "read") from None
        except Exception as err:  # botocore connection errors and the like
            raise s3_error(err, self.uri(key), "read") from None
        return response["Body"].read(), response["ETag"]

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            s3_client().put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                Metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest()},
                **condition,
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise s3_error(err, self.uri(key), "write") from None
        except Exception as err:
            raise s3_error(err, self.uri(key), "write") from None
        return True

    def create(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, tag: str | None) -> bool:
        return self._conditional_put(key, data, **({"IfMatch": tag} if tag else {"IfNoneMatch": "*"}))

    def put_file(self, key: str, path: Path) -> None:
        upload_s3_file(path, self.uri(key))

    def get_file(self, key: str, target: Path) -> Path:
        return download_s3_file(self.uri(key), target)

    def children(self, prefix: str) -> list[str]:
        inner = prefix.strip("/")
        full = self.prefix + (f"{inner}/" if inner else "")
        paginator = s3_client().get_paginator("list_objects_v2")
        names: set[str] = set()
        pages = _s3_call(
            self.uri(prefix),
            "list",
            lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/")),
        )
        for page in pages:
            names |= {p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", [])}
            names |= {item["Key"][len(full) :] for item in page.get("Contents", [])}
        return sorted(n for n in names if n)

    def delete(self, prefix: str) -> None:
        full = self._key(prefix.strip("/"))
        paginator = s3_client().get_paginator("list_objects_v2")
        pages = _s3_call(
            self.uri(prefix), "list", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full))
        )
        keys = [
            item["Key"]
            for page in pages
            for item in page.get("Contents", [])
            if item["Key"] == full or item["Key"].startswith(f"{full}/")
        ]
        for start in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True}
            _s3_call(
                self.uri(prefix),
                "delete",
                lambda batch=batch: s3_client().delete_objects(Bucket=self.bucket, Delete=batch),
            )


def put_tree(local_dir: Path, uri: str) -> None:
    """Copy every file under `local_dir` to the directory or s3:// prefix `uri`."""
    store = open_store(uri)
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
        store.put_file(path.relative_to(local_dir).as_posix(), path)


def open_store(uri: str) -> Store:
    """The Store for a registry root: a local directory or an s3:// prefix."""
    scheme = scheme_of(uri)
    if scheme == "s3":
        return S3Store(uri)
    if scheme in ("", "file"):
        return LocalStore(uri)
    raise StorageError(f"'{uri}': a registry lives in a local directory or under s3://BUCKET/PREFIX")
