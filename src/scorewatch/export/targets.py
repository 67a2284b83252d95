"""Export targets: a folder (``file://``), an Azure Blob container (``az://``) or an S3 bucket (``s3://``).

A target is an fsspec URL; files are named relative to it. Two writes, each safe to repeat after a
crash (that is what makes export exactly-once, see :mod:`scorewatch.export.exporter`):

- :meth:`Target.put` makes a whole file appear at once: a local file is written under a temporary
  name, fsynced and renamed; an object store commits a single upload (a PUT, or a block list /
  multipart upload completed at the end). Writing the same name again replaces it.
- :meth:`Target.append` adds bytes to a file (the diagnostic format's ``PT1H.json``, which Azure also
  appends to through the hour) *given the size the file had before*: a local file is cut back to that
  size first; an Azure append blob gets only the part of the data it does not hold yet; S3, which has
  no append, gets the first ``size`` bytes and the data as one new object.

Credentials come from the settings (``export_azure_*``, ``export_s3_*``) or the libraries' own
environment variables; they are never logged, and :meth:`Target.redact` removes them from error
messages. ``az://`` needs the ``azure`` extra (adlfs), ``s3://`` the ``s3`` extra (s3fs).
"""

from __future__ import annotations

import importlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

import fsspec

from scorewatch.errors import BadRequest, ConfigError
from scorewatch.settings import Settings

# protocol → (the package fsspec needs for it, the scorewatch extra that installs it)
_PACKAGES = {"az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
             "s3": ("s3fs", "s3")}
_SECRET_PATTERNS = (re.compile(r"(AccountKey=|SharedAccessSignature=)[^;\s]+", re.I),
                    re.compile(r"([?&]sig=)[^&\s]+", re.I))


def normalize_url(url: str) -> str:
    """A target URL as stored in a rule: bare paths become absolute ``file://`` URLs."""
    if "://" not in url:
        return "file://" + str(Path(url).expanduser().resolve())
    protocol, _, rest = url.partition("://")
    if protocol == "file":
        return "file://" + str(Path(rest).expanduser().resolve())
    if protocol not in _PACKAGES:
        raise BadRequest(f"unsupported export target {url!r}: use file://, az:// (or abfs://) or s3://")
    if not rest.strip("/"):
        raise BadRequest(f"export target {url!r} names no container or bucket")
    return url.rstrip("/")


# setting → the filesystem's option, per package; an empty setting leaves the library's own default
_OPTIONS = {"s3fs": {"export_s3_access_key_id": "key", "export_s3_secret_access_key": "secret",
                     "export_s3_endpoint_url": "endpoint_url"},
            "adlfs": {"export_azure_connection_string": "connection_string",
                      "export_azure_account_name": "account_name", "export_azure_account_key": "account_key"}}


def _storage_options(package: str, settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {option: getattr(settings, name) for name, option in _OPTIONS[package].items()
                               if getattr(settings, name)}
    if package == "s3fs" and settings.export_s3_region:
        options["client_kwargs"] = {"region_name": settings.export_s3_region}
    if package == "adlfs":  # see _short_retries
        options.update(timeout=60, connection_timeout=10, skip_instance_cache=True)
    return options


class Target:
    """Files under ``root`` on an fsspec filesystem (an object store: S3 and anything else)."""

    def __init__(self, url: str, fs: Any, root: str, secrets: list[str]) -> None:
        self.url, self.fs, self.root = url, fs, root.rstrip("/")
        self._secrets = [s for s in secrets if s]

    @staticmethod
    def open(url: str, settings: Settings) -> Target:
        """The target for ``url`` (see :func:`normalize_url`), with credentials from ``settings``."""
        url = normalize_url(url)
        protocol, _, rest = url.partition("://")
        if protocol == "file":
            return LocalTarget(url, fsspec.filesystem("file"), rest, [])
        package, extra = _PACKAGES[protocol]
        try:
            importlib.import_module(package)
        except ImportError:
            raise ConfigError(f"{protocol}:// export targets need the {package} package: "
                              f"pip install 'scorewatch[{extra}]'") from None
        options = _storage_options(package, settings)
        secrets = [str(v) for k, v in options.items() if k in ("secret", "account_key", "connection_string")]
        try:
            fs = fsspec.filesystem(protocol, **options)
        except Exception as exc:  # adlfs checks the connection details here
            raise BadRequest(f"cannot use {url}: {_describe(exc, secrets)}") from None
        root = fs._strip_protocol(url)
        if protocol in ("az", "abfs", "abfss"):
            _short_retries(fs)
            return AzureTarget(url, fs, root, secrets)
        return Target(url, fs, root, secrets)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def put(self, name: str, data: bytes) -> None:
        """Make ``name`` hold ``data``, all at once (one upload, committed at its end)."""
        self.fs.pipe_file(self.path(name), data)

    def size(self, name: str) -> int:
        """Bytes in ``name``; 0 when there is no such file."""
        self.fs.invalidate_cache(self.path(name))  # a listing cached by the filesystem may be stale
        try:
            return int(self.fs.info(self.path(name))["size"])
        except FileNotFoundError:
            return 0

    def append(self, name: str, data: bytes, size: int) -> None:
        """Make ``name`` hold its first ``size`` bytes, then ``data`` (no append here: one new object)."""
        head = self.fs.cat_file(self.path(name), start=0, end=size) if size else b""
        if len(head) != size:
            raise OSError(f"{name} holds {len(head)} bytes, fewer than the {size} exported to it")
        self.put(name, head + data)

    def check(self) -> None:
        """Write and delete a small file, so bad credentials or a missing container show now."""
        name = f".scorewatch-check-{uuid.uuid4().hex}"
        try:
            self.put(name, b"scorewatch export check\n")
            self.fs.rm_file(self.path(name))
        except Exception as exc:
            raise BadRequest(f"cannot write to {self.url}: {self.describe(exc)}") from None

    def describe(self, exc: BaseException) -> str:
        """A one-line account of ``exc`` with every credential taken out."""
        return _describe(exc, self._secrets)


def _describe(exc: BaseException, secrets: list[str]) -> str:
    code = getattr(exc, "error_code", None) or getattr(exc, "code", None)
    code = getattr(code, "value", code)  # Azure's error codes are an enum
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(code, str) and code not in text:
        text += f" ({code})"
    if getattr(exc, "status_code", None) in (401, 403) or isinstance(exc, PermissionError):
        text = "the credentials were rejected: " + text
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class LocalTarget(Target):
    """A folder: files are written under a temporary name, fsynced, then renamed into place."""

    def _file(self, name: str) -> Path:
        return Path(self.root) / name

    def put(self, name: str, data: bytes) -> None:
        path = self._file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by an attempt killed halfway
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial file behind
            raise
        _sync_dir(path.parent)

    def size(self, name: str) -> int:
        try:
            return self._file(name).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, name: str, data: bytes, size: int) -> None:
        path = self._file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b") as fh:
            held = os.fstat(fd).st_size
            if held < size:
                raise OSError(f"{path} holds {held} bytes, fewer than the {size} exported to it")
            fh.truncate(size)  # what an interrupted earlier attempt added goes
            fh.seek(size)
            fh.write(data)
            fh.flush()
            os.fsync(fd)
        if size == 0:
            _sync_dir(path.parent)

    def check(self) -> None:
        try:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadRequest(f"cannot write to {self.url}: {self.describe(exc)}") from None
        super().check()


class AzureTarget(Target):
    """An Azure Blob container: appends go to append blobs, one append block at a time."""

    def append(self, name: str, data: bytes, size: int) -> None:
        held = self.size(name)
        if held < size or held > size + len(data):
            raise OSError(f"{name} holds {held} bytes: not the {size} exported to it, nor those plus this part")
        if held == size + len(data):  # an interrupted earlier attempt got it all in
            return
        with self.fs.open(self.path(name), "ab") as fh:
            fh.write(data[held - size:])


def _short_retries(fs: Any) -> None:
    """Give an adlfs filesystem a client that retries a call for ~10 s, not the Azure SDK's default
    ~80 s (15 s, 18 s, 24 s of back-off): the hub retries whole rounds itself, so a failing target
    shows on /metrics at once and a returning one is used again within seconds."""
    try:  # azure-storage-blob comes with adlfs (the `azure` extra), which made `fs`
        from azure.storage.blob.aio import BlobServiceClient
    except ImportError:
        raise ConfigError("az:// targets need the azure extra: pip install 'scorewatch[azure]'") from None

    retries: dict[str, Any] = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
    if fs.connection_string:
        fs.service_client = BlobServiceClient.from_connection_string(fs.connection_string, **retries)
    elif getattr(fs, "account_url", None) and fs.account_key:
        fs.service_client = BlobServiceClient(fs.account_url, credential=fs.account_key, **retries)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
