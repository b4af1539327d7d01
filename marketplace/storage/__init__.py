"""Blob storage: gear archives stored content-addressed by sha256.

One small interface, :class:`BlobStore`, with a local-directory backend
(the default) and an S3-compatible backend; :func:`open_blob_store` picks one
from ``GEARS_STORAGE_URL``. Every failure is a :class:`StorageError` with a
stable ``code``.
"""

from __future__ import annotations

from .base import MAX_BLOB_SIZE, BlobInfo, BlobStore, validate_sha256
from .errors import (
    BlobNotFound,
    IntegrityError,
    InvalidDigest,
    InvalidStorageURL,
    StorageError,
    StorageUnavailable,
)
from .local import LocalBlobStore
from .s3 import S3BlobStore, default_client_config
from .urls import SUPPORTED_FORMS, open_blob_store

__all__ = [
    "MAX_BLOB_SIZE",
    "SUPPORTED_FORMS",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "IntegrityError",
    "InvalidDigest",
    "InvalidStorageURL",
    "LocalBlobStore",
    "S3BlobStore",
    "StorageError",
    "StorageUnavailable",
    "default_client_config",
    "open_blob_store",
    "validate_sha256",
]
