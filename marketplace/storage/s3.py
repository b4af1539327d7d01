"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2) through boto3."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC
from typing import IO, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .base import (
    BlobInfo,
    BlobStore,
    check_digest,
    content_disposition,
    hash_into,
    spooled,
    validate_sha256,
)
from .errors import BlobNotFound, IntegrityError, StorageError, StorageUnavailable

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}
_BAD_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                ConnectionClosedError)
_NO_CREDENTIALS = (NoCredentialsError, PartialCredentialsError)
_HEX = frozenset("0123456789abcdef")

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


class _MissingBucket(StorageUnavailable):
    """The bucket does not exist (``ensure`` may create it)."""


#: Seconds to open a connection, seconds a read may wait, attempts per request.
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 2


def default_client_config(*, path_style: bool, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                          read_timeout: float = DEFAULT_READ_TIMEOUT,
                          max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Config:
    """The botocore settings used unless a caller passes its own ``config``.

    Timeouts are short enough that a stalled endpoint fails a request in seconds
    (worst case ``max_attempts * (connect_timeout + read_timeout)``), not the
    minutes botocore's defaults allow, during which a request thread is held;
    path-style addressing is what MinIO, Ceph and most self-hosted endpoints
    expect. ``GEARS_S3_CONNECT_TIMEOUT``, ``GEARS_S3_READ_TIMEOUT`` and
    ``GEARS_S3_MAX_ATTEMPTS`` set them.
    """
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path" if path_style else "auto"},
    )


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix>/ab/<sha256>`` in one bucket.

    Credentials come from the standard AWS chain (environment, profile,
    instance role). ``endpoint_url`` selects a non-AWS store;
    ``presign_endpoint_url`` is the address clients use when it differs from
    the one the registry talks to (e.g. an internal service name vs a public
    host). ``client`` injects a ready boto3 S3 client, ``config`` replaces
    :func:`default_client_config`, ``timeouts`` adjusts it.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any | None = None,
        presign_endpoint_url: str | None = None,
        config: Config | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        if not bucket:
            raise StorageError("an S3 blob store needs a bucket name", code="invalid_storage_url")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._config = config or default_client_config(
            path_style=endpoint_url is not None,
            connect_timeout=float((timeouts or {}).get("connect_timeout",
                                                       DEFAULT_CONNECT_TIMEOUT)),
            read_timeout=float((timeouts or {}).get("read_timeout", DEFAULT_READ_TIMEOUT)),
            max_attempts=int((timeouts or {}).get("max_attempts", DEFAULT_MAX_ATTEMPTS)))
        self._region = region
        if client is None:
            client = self._make_client(endpoint_url)
        elif endpoint_url is None and "amazonaws.com" not in (client.meta.endpoint_url or ""):
            # An injected client may talk to a custom endpoint; name it in messages.
            endpoint_url = client.meta.endpoint_url
        self.client = client
        self.endpoint_url: str | None = endpoint_url
        self._presign_client = (
            self._make_client(presign_endpoint_url) if presign_endpoint_url else self.client
        )
        location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.description = f"{location} @ {endpoint_url}" if endpoint_url else location

    def _make_client(self, endpoint_url: str | None) -> Any:
        global _session
        # Loading the service model is the slow part of building a client, so one
        # session is shared; creating clients from it is not thread-safe, using
        # them is.
        with _session_lock:
            if _session is None:
                _session = boto3.session.Session()
            return _session.client(
                "s3", endpoint_url=endpoint_url, region_name=self._region, config=self._config
            )

    # -- keys and errors -------------------------------------------------

    def key_for(self, sha256: str) -> str:
        """The object key of blob ``sha256``."""
        validate_sha256(sha256)
        key = f"{sha256[:2]}/{sha256}"
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def _where(self) -> str:
        return self.endpoint_url or "the AWS S3 endpoint"

    @contextlib.contextmanager
    def _errors(self, sha256: str | None = None) -> Iterator[None]:
        """Translate botocore failures into storage errors with actionable messages."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise StorageUnavailable(
                f"the S3 endpoint {self._where} is unreachable ({exc}); check "
                "GEARS_S3_ENDPOINT_URL and that the object store is running"
            )
        except _NO_CREDENTIALS as exc:
            raise StorageUnavailable(
                f"no usable S3 credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the host an IAM role"
            )
        except ClientError as exc:
            raise self._client_error(exc, sha256)
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"the S3 request to {self._where} failed: {exc}; check GEARS_S3_ENDPOINT_URL "
                "and the AWS region (AWS_DEFAULT_REGION)"
            )

    def _client_error(self, exc: ClientError, sha256: str | None) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = error.get("Message") or code or str(status)
        if code in _NO_BUCKET or (sha256 is None and (code in _NOT_FOUND or status == 404)):
            return _MissingBucket(
                f"the S3 bucket {self.bucket!r} does not exist at {self._where}; create it "
                "with `marketplace init` or check GEARS_STORAGE_URL"
            )
        if code in _NOT_FOUND or status == 404:
            return BlobNotFound(f"no blob with sha256 {sha256} in {self.description}")
        if code in _DENIED or status == 403:
            return StorageUnavailable(
                f"access to s3://{self.bucket} at {self._where} was denied ({detail}); check "
                "the S3 credentials and that they may read, write and list the bucket"
            )
        if code in _BAD_CHECKSUM:
            return IntegrityError(
                f"the object store rejected the upload of {sha256}: its checksum did not "
                f"match ({detail}); nothing was stored"
            )
        return StorageError(
            f"the S3 request to {self._where} for s3://{self.bucket} failed: {detail} ({code})"
        )

    # -- writing ---------------------------------------------------------

    def put(self, sha256: str, data: bytes | IO[bytes]) -> None:
        key = self.key_for(sha256)
        # Hash before anything goes over the wire, so a wrong digest leaves nothing
        # behind; the checksums sent with the request make the store verify the
        # bytes it receives as well.
        with spooled() as body:
            actual, size = hash_into(data, body)
            check_digest(sha256, actual, size)
            body.seek(0)
            md5 = hashlib.md5(usedforsecurity=False)
            while chunk := body.read(1024 * 1024):
                md5.update(chunk)
            body.seek(0)
            # A single PUT is atomic: the object appears whole or not at all.
            # Uploading again when the blob exists is deliberate: it is idempotent
            # and refreshes LastModified, so garbage collection sees it as new.
            with self._errors(sha256):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentLength=size,
                    ContentType="application/octet-stream",
                    ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
                )
        stored = self.size(sha256)
        if stored != size:
            with contextlib.suppress(StorageError):
                self.delete(sha256)
            raise IntegrityError(
                f"the object store kept {stored} bytes of blob {sha256} instead of {size}; "
                "the object was removed, retry the upload"
            )

    def delete(self, sha256: str) -> None:
        key = self.key_for(sha256)
        with self._errors(sha256):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND:
                    raise

    # -- reading ---------------------------------------------------------

    def _head(self, sha256: str) -> dict[str, Any]:
        key = self.key_for(sha256)
        with self._errors(sha256):
            return self.client.head_object(Bucket=self.bucket, Key=key)

    def exists(self, sha256: str) -> bool:
        try:
            self._head(sha256)
        except BlobNotFound:
            return False
        return True

    def size(self, sha256: str) -> int:
        return int(self._head(sha256)["ContentLength"])

    def open(self, sha256: str) -> BinaryIO:
        key = self.key_for(sha256)
        with self._errors(sha256):
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        # botocore's StreamingBody is a readable io.IOBase: it streams from the socket.
        return response["Body"]

    def read(self, sha256: str) -> bytes:
        # A body that stalls mid-stream times out like a request that never starts.
        with self._errors(sha256), self.open(sha256) as stream:
            return stream.read()

    def verify(self, sha256: str) -> bool:
        with self._errors(sha256):
            return super().verify(sha256)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        list_prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
                for obj in page.get("Contents", []):
                    info = self._blob_info(obj, list_prefix)
                    if info is not None:
                        yield info

    @staticmethod
    def _blob_info(obj: dict[str, Any], list_prefix: str) -> BlobInfo | None:
        rest = obj["Key"][len(list_prefix):]
        shard, _, name = rest.partition("/")
        if not (len(name) == 64 and set(name) <= _HEX and name[:2] == shard):
            return None  # not a blob: something else shares the prefix
        modified = obj["LastModified"]
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        return BlobInfo(name, int(obj["Size"]), modified.astimezone(UTC))

    def presigned_url(
        self, sha256: str, expires: int = 300, filename: str | None = None
    ) -> str:
        """A presigned GET URL valid for ``expires`` seconds.

        With ``filename`` the store answers with ``Content-Disposition:
        attachment`` so browsers save the download under that name. The URL is
        signed locally; it does not check that the blob exists.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_for(sha256)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with self._errors(sha256):
            return self._presign_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=int(expires)
            )

    # -- health ----------------------------------------------------------

    def check(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)

    def ensure(self) -> None:
        try:
            self.check()
            return
        except _MissingBucket:
            pass
        params: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region not in ("us-east-1", "aws-global"):
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            with self._errors():
                try:
                    self.client.create_bucket(**params)
                except ClientError as exc:
                    # Another replica running `marketplace init` at the same time won.
                    if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                        raise
        except StorageUnavailable as exc:
            raise StorageUnavailable(
                f"the S3 bucket {self.bucket!r} does not exist and could not be created "
                f"({exc.message}); create it yourself or allow s3:CreateBucket"
            )
        self.check()
