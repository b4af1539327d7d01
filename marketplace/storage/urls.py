"""Choosing a blob store from a storage URL (``GEARS_STORAGE_URL``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import BlobStore
from .errors import InvalidStorageURL
from .local import LocalBlobStore
from .s3 import S3BlobStore

SUPPORTED_FORMS = (
    "file:///absolute/dir, file:relative/dir, a plain directory path, "
    "or s3://bucket/prefix (with GEARS_S3_ENDPOINT_URL for non-AWS stores)"
)


def _invalid(url: str, why: str) -> InvalidStorageURL:
    return InvalidStorageURL(
        f"invalid storage URL {url!r}: {why}; supported forms are {SUPPORTED_FORMS}"
    )


def _local_path(raw: str, base_dir: Path | None) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


def open_blob_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    base_dir: Path | None = None,
    s3_timeouts: dict[str, float] | None = None,
) -> BlobStore:
    """Build the blob store that ``url`` names.

    * ``file:///abs/dir`` (or ``file://localhost/abs/dir``): a local directory;
    * ``file:relative/dir`` or a plain path: a local directory relative to
      ``base_dir`` (default: the current directory);
    * ``s3://bucket/prefix``: an S3 bucket, through ``s3_endpoint_url`` when set,
      with ``s3_timeouts`` (``connect_timeout``, ``read_timeout``, ``max_attempts``).

    Nothing is created or contacted here; call ``ensure()`` or ``check()`` for that.
    Raises :class:`InvalidStorageURL` (``code == "invalid_storage_url"``).
    """
    url = url.strip() if isinstance(url, str) else url
    if not url:
        raise _invalid(str(url), "it is empty")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # A one-letter "scheme" is a Windows drive letter, i.e. a plain path.
    if scheme == "" or (len(scheme) == 1 and "://" not in url):
        return LocalBlobStore(_local_path(url, base_dir))
    if scheme == "file":
        if parts.query or parts.fragment:
            raise _invalid(url, "a file URL takes no query or fragment")
        if parts.netloc not in ("", "localhost"):
            raise _invalid(
                url,
                f"{parts.netloc!r} is read as a host name; use file:///absolute/dir "
                "(three slashes) or file:relative/dir",
            )
        raw = unquote(parts.path)
        if not raw:
            raise _invalid(url, "it names no directory")
        return LocalBlobStore(_local_path(raw, base_dir))
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise _invalid(url, "it names no bucket")
        if parts.query or parts.fragment:
            raise _invalid(url, "an s3 URL takes no query or fragment")
        return S3BlobStore(
            bucket,
            unquote(parts.path).strip("/"),
            endpoint_url=s3_endpoint_url or None,
            region=s3_region or None,
            timeouts=s3_timeouts,
        )
    raise _invalid(url, f"the scheme {parts.scheme!r} is not supported")
