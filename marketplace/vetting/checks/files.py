"""Files nobody can review: large files and opaque binaries in the package.

An admin approves what they can read. A binary blob is code or data that
review cannot see into (an encrypted payload the gear decrypts at run time, a
compressed module, a model of unknown provenance), so every binary file that
is not a recognized image format is ``opaque_binary`` (``high``); recognition
is by content (magic bytes), never by the file's name. A file above
:data:`MAX_REVIEWABLE_BYTES` is ``large_file`` whatever it holds: the review
page's diff cannot show it whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding

MAX_REVIEWABLE_BYTES = 1024 * 1024

#: Image formats a catalog page may show (icons, screenshots), by their first bytes.
IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def image_format(data: bytes) -> str | None:
    """The image format ``data`` starts with, or ``None``."""
    for magic, kind in IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def is_text(data: bytes) -> bool:
    """UTF-8 without NUL bytes: something a reviewer can read."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_files(ctx: VetContext) -> Iterable[Finding]:
    out: list[Finding] = []
    for name in ctx.archive.names:
        data = ctx.archive.read(name)
        if len(data) > MAX_REVIEWABLE_BYTES:
            out.append(finding("large_file", f"{len(data):,} bytes, above the "
                               f"{MAX_REVIEWABLE_BYTES:,}-byte review limit: the review "
                               "cannot show it whole", file=name))
        if not is_text(data) and image_format(data) is None:
            out.append(finding("opaque_binary", f"a {len(data):,}-byte binary file that is "
                               "no known image format: its content cannot be reviewed",
                               file=name))
    return out
