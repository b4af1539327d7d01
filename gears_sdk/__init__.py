"""gears_sdk: everything a gear author depends on.

The manifest schema and validator, version ranges, hook specifications, the
types a hook receives and returns, the reproducible archive format, the
``gears`` command line and a pytest plugin for testing gears. Nothing here
imports the server side (``marketplace``).
"""

from gears_sdk.errors import ArchiveError, GearsError, HookError, ManifestError, Problem, RangeError
from gears_sdk.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

#: The engine API version this SDK implements; manifests' ``engine`` ranges
#: are matched against it.
ENGINE_VERSION = "1.0.0"

__all__ = [
    "ENGINE_VERSION",
    "ArchiveError",
    "GearsError",
    "HookError",
    "ManifestError",
    "Problem",
    "RangeError",
    "__version__",
    "hookimpl",
    "hookspec",
]
