"""``gears_sdk.testing``: test gears with pytest, no engine needed.

Installed with the SDK as a pytest plugin, so a gear's tests just use its
fixtures::

    def test_greets(gear, make_profile):
        result = gear.render(make_profile(attributes={"first_name": "Ada"}))
        assert "Ada" in result.html

Fixtures:

* ``gear``: the gear whose ``gear.json`` is found by walking up from the test
  file, loaded with :func:`load_gear` (a :class:`LoadedGear`);
* ``load_gear``: a factory loading any gear directory;
* ``gear_ctx``: a fresh :class:`FakeContext`;
* ``make_profile`` / ``make_event``: factories for the engine's shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gears_sdk.gear_dir import find_gear_dir
from gears_sdk.testing.fakes import (
    FakeContext,
    FakeHttp,
    FakeLog,
    FakeRequest,
    FakeSecrets,
    FakeState,
    LogRecord,
    UnexpectedRequest,
)
from gears_sdk.testing.loaded import (
    LoadedGear,
    config_defaults,
    load_gear,
    make_event,
    make_profile,
)

__all__ = [
    "FakeContext",
    "FakeHttp",
    "FakeLog",
    "FakeRequest",
    "FakeSecrets",
    "FakeState",
    "LoadedGear",
    "LogRecord",
    "UnexpectedRequest",
    "config_defaults",
    "load_gear",
    "make_event",
    "make_profile",
]

_load_gear = load_gear
_make_profile = make_profile
_make_event = make_event


@pytest.fixture(name="gear")
def gear_fixture(request: pytest.FixtureRequest) -> LoadedGear:
    """The gear this test belongs to (nearest ``gear.json`` above the test file)."""
    found = find_gear_dir(request.path.parent)
    if found is None:
        pytest.fail(f"the 'gear' fixture found no gear.json in {request.path.parent} or above; "
                    "use the 'load_gear' fixture with a path instead", pytrace=False)
    return _load_gear(found)


@pytest.fixture(name="load_gear")
def load_gear_fixture() -> Callable[..., LoadedGear]:
    """A factory: ``load_gear(path, secrets=None)`` → :class:`LoadedGear`."""
    return _load_gear


@pytest.fixture(name="gear_ctx")
def gear_ctx_fixture() -> FakeContext:
    """A fresh in-memory ``ctx`` (no network allowed until you set ``http.network``)."""
    return FakeContext()


@pytest.fixture(name="make_profile")
def make_profile_fixture() -> Callable[..., dict[str, Any]]:
    """``make_profile(user_id="u1", attributes=None, traits=None, events=None)``."""
    return _make_profile


@pytest.fixture(name="make_event")
def make_event_fixture() -> Callable[..., dict[str, Any]]:
    """``make_event(type="view", user_id="u1", timestamp=None, **properties)``."""
    return _make_event
