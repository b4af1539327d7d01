"""gears_sdk: everything a gear author depends on.

The manifest schema and validator, version ranges, hook specifications, the
types a hook receives and returns, the reproducible archive format, the
``gears`` command line and a pytest plugin for testing gears. Nothing here
imports the server side (``marketplace``).
"""

from gears_sdk.errors import ArchiveError, GearsError, HookError, ManifestError, Problem, RangeError
from gears_sdk.hookspecs import hookimpl, hookspec

#: The version of this package, and so of the engine it ships with (``setup.cfg``
#: reads it): one number for the SDK, the registry and the engine.
__version__ = "1.0.0"

#: The engine version manifests' ``engine`` ranges are matched against: the package
#: version. A server can run as another version through its ``ENGINE_VERSION``
#: setting (for testing upgrades).
ENGINE_VERSION = __version__

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
