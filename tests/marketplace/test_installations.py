"""Installing gears into workspaces, through the service layer and the JSON API,
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from marketplace.accounts import create_token
from marketplace.blobs import get_blob_store
from marketplace.errors import MarketplaceError
from marketplace.models import AuditEntry, Gear
from marketplace.registry import publish as publishing
from marketplace.registry import states
from marketplace.workspaces import (
    Installation,
    events,
    get_installation,
    install,
    installation_secrets,
    mark_failed,
    plan_install,
    set_enabled,
    uninstall,
    update_config,
    upgrade,
)

FIRST_NAME = "profile.read:attributes.first_name"
SCHEMA = {
    "type": "object",
    "required": ["api_key"],
    "properties": {
        "window_days": {"type": "integer", "minimum": 1, "default": 90},
        "api_key": {"type": "string", "format": "secret", "minLength": 6},
        "label": {"type": "string"},
    },
}


@pytest.fixture
def people(make_user, make_publisher, make_workspace) -> dict[str, Any]:
    dev = make_user(role="developer")
    admin = make_user(role="admin")
    member = make_user(role="business")
    outsider = make_user(role="business")
    make_publisher(name="acme", owner=dev)
    ws = make_workspace(member=member, name="shop")
    other_ws = make_workspace(member=outsider, name="other")
    return {"dev": dev, "admin": admin, "member": member, "outsider": outsider, "ws": ws,
            "other_ws": other_ws}


@pytest.fixture
def release(app, session, people, make_gear_archive):
    """``release(name, version, status="approved", **manifest)`` publishes (and reviews) a version."""

    _, token = create_token(session, people["dev"], ["publish:acme"])
    session.commit()

    def make(name: str = "acme/hello", version: str = "1.0.0", status: str = "approved",
             **overrides: Any):
        data = make_gear_archive(name, version, **overrides)
        row = publishing.publish(session, get_blob_store(app),
                                 publishing.Upload(data=data, user=people["dev"], token=token))
        if status != "pending":
            states.review(session, people["admin"], row, approve=status == "approved",
                          reason=None if status == "approved" else "no")
        return row

    return make


def _err(excinfo) -> MarketplaceError:
    return excinfo.value


def _do_install(session, people, name="acme/hello", **kw):
    kw.setdefault("consent", True)
    return install(session, people["ws"], name, actor=people["member"], **kw)


# -- install, config and secrets -----------------------------------------------------------


def test_install_validates_config_applies_defaults_and_encrypts_secrets(session, people,
                                                                       release):
    release(config_schema=SCHEMA)
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, config={"window_days": 0, "label": 3})
    err = _err(exc)
    assert (err.status, err.code) == (422, "invalid_config")
    assert {d["path"] for d in err.details} == {"$.config.window_days", "$.config.api_key",
                                                "$.config.label"}

    inst = _do_install(session, people, config={"api_key": "sup3r-secret", "label": "x"})
    assert inst.config == {"window_days": 90, "label": "x"}
    assert inst.version == "1.0.0" and inst.constraint == "1.0.0"
    assert inst.consented_capabilities == [FIRST_NAME]
    raw = session.execute(text("SELECT secrets_encrypted, config FROM installations")).one()
    assert "sup3r-secret" not in raw[0] and "sup3r-secret" not in str(raw[1])
    assert installation_secrets(inst) == {"api_key": "sup3r-secret"}
    assert session.get(Gear, inst.gear_id).install_count == 1


def test_update_config_keeps_blank_secrets_and_clears_null_ones(session, people, release):
    schema = {**SCHEMA, "required": []}
    release(config_schema=schema)
    inst = _do_install(session, people, config={"api_key": "first-secret"})
    update_config(session, inst, {"api_key": "", "window_days": 5}, people["member"])
    assert installation_secrets(inst) == {"api_key": "first-secret"}
    assert inst.config == {"window_days": 5}
    update_config(session, inst, {"api_key": {"set": True}}, people["member"])
    assert installation_secrets(inst) == {"api_key": "first-secret"}
    assert inst.config == {"window_days": 90}
    update_config(session, inst, {"api_key": "second-secret"}, people["member"])
    assert installation_secrets(inst) == {"api_key": "second-secret"}
    update_config(session, inst, {"api_key": None}, people["member"])
    assert installation_secrets(inst) == {} and inst.secrets_encrypted is None


def test_consent_must_cover_every_capability(session, people, release):
    release(permissions={"network": ["api.example.com"],
                         "profile": {"read": ["attributes.first_name"]}})
    for consent, missing in ((False, ["network:api.example.com", FIRST_NAME]),
                             ([FIRST_NAME], ["network:api.example.com"])):
        with pytest.raises(MarketplaceError) as exc:
            _do_install(session, people, consent=consent)
        assert (_err(exc).status, _err(exc).code) == (422, "consent_required")
        assert [d["capability"] for d in _err(exc).details] == missing
        assert "Send requests to api.example.com" in _err(exc).message
    inst = _do_install(session, people, consent=["network:api.example.com", FIRST_NAME, "x"])
    assert inst.consented_capabilities == ["network:api.example.com", FIRST_NAME]


def test_installing_twice_is_409(session, people, release):
    release()
    _do_install(session, people)
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people)
    assert (_err(exc).status, _err(exc).code) == (409, "already_installed")


def test_pending_rejected_and_yanked_versions_are_not_installable(session, people, release):
    release("acme/pending", status="pending")
    release("acme/rejected", status="rejected")
    yanked = release("acme/old")
    states.set_yanked(session, people["admin"], yanked, yanked=True, reason="broken")
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, name="acme/old")
    assert (_err(exc).status, _err(exc).code) == (409, "unresolvable")
    # A gear never released does not exist for installers, like in the registry (404).
    for name in ("acme/pending", "acme/rejected", "acme/nothing"):
        with pytest.raises(MarketplaceError) as exc:
            _do_install(session, people, name=name)
        assert (_err(exc).status, _err(exc).code) == (404, "gear_not_found"), name
    release("acme/two", "1.0.0")
    release("acme/two", "1.1.0", status="pending")
    assert _do_install(session, people, name="acme/two").version == "1.0.0"


def test_invalid_version_spec_is_422(session, people, release):
    release()
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, version_spec="^^1")
    assert (_err(exc).status, _err(exc).code) == (422, "invalid_version")


def test_missing_dependency_is_refused_with_what_to_install(session, people, release):
    release("acme/base", "1.2.0")
    release("acme/addon", requires={"acme/base": "^1.0.0"})
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, name="acme/addon")
    err = _err(exc)
    assert err.code == "missing_dependency"
    assert "acme/base ^1.0.0" in err.message and "install it first" in err.message
    assert err.details[0]["gear"] == "acme/base"
    _do_install(session, people, name="acme/base")
    plan = plan_install(session, people["ws"], "acme/addon")
    assert [(d.gear, d.installed_version, d.satisfied) for d in plan.dependencies] == [
        ("acme/base", "1.2.0", True)]
    _do_install(session, people, name="acme/addon")
    # A dependency cannot be removed from under its dependent.
    base = next(i for i in session.scalars(select(Installation)) if i.gear.name == "acme/base")
    with pytest.raises(MarketplaceError) as exc:
        uninstall(session, base, people["member"])
    assert _err(exc).code == "required_by" and "acme/addon" in _err(exc).message


def test_unknown_dependency_is_a_missing_dependency(session, people, release):
    release("acme/addon", requires={"acme/ghost": "^1.0.0"})
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, name="acme/addon")
    assert _err(exc).code == "missing_dependency" and "acme/ghost" in _err(exc).message


def test_resolver_conflict_is_explained(session, people, release):
    release("acme/base", "2.0.0")
    release("acme/addon", requires={"acme/base": "^1.0.0"})
    _do_install(session, people, name="acme/base")
    with pytest.raises(MarketplaceError) as exc:
        _do_install(session, people, name="acme/addon")
    err = _err(exc)
    assert (err.status, err.code) == (409, "unresolvable")
    assert ("acme/addon 1.0.0 requires acme/base ^1.0.0, but this workspace runs "
            "acme/base 2.0.0") in err.message
    assert err.details and err.details[0]["gear"] == "acme/base"


# -- upgrade, downgrade ---------------------------------------------------------------------


def test_upgrade_asks_consent_only_when_capabilities_grow(session, people, release):
    release("acme/hello", "1.0.0")
    net = {"network": ["api.example.com"], "profile": {"read": ["attributes.first_name"]}}
    release("acme/hello", "1.1.0", permissions=net)
    release("acme/hello", "1.2.0", permissions={"network": ["api.example.com"]})
    inst = _do_install(session, people, version_spec="1.0.0")

    plan = plan_install(session, people["ws"], "acme/hello", "1.1.0")
    assert plan.current is inst and plan.diff.added == ["network:api.example.com"]
    with pytest.raises(MarketplaceError) as exc:
        upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
    assert _err(exc).code == "consent_required"
    upgrade(session, inst, version_spec="1.1.0", actor=people["member"],
            consent=["network:api.example.com"])
    assert inst.version == "1.1.0" and inst.constraint == "1.1.0"

    # Fewer capabilities: no consent needed.
    upgrade(session, inst, version_spec="^1.0.0", actor=people["member"])
    assert (inst.version, inst.constraint) == ("1.2.0", "^1.0.0")
    assert inst.consented_capabilities == ["network:api.example.com"]

    # Rollback to an earlier approved version; it adds first_name again, so consent.
    with pytest.raises(MarketplaceError):
        upgrade(session, inst, version_spec="1.0.0", actor=people["member"])
    upgrade(session, inst, version_spec="1.0.0", actor=people["member"], consent=True)
    assert inst.version == "1.0.0"
    actions = session.scalars(select(AuditEntry.action).where(
        AuditEntry.target_type == "installation").order_by(AuditEntry.id)).all()
    assert actions == ["installation.install", "installation.upgrade", "installation.upgrade",
                       "installation.downgrade"]


def test_upgrade_revalidates_config_against_the_target_schema(session, people, release):
    release("acme/hello", "1.0.0", config_schema=SCHEMA)
    stricter = {**SCHEMA, "required": ["api_key", "region"],
                "properties": {**SCHEMA["properties"], "region": {"type": "string"},
                               "batch": {"type": "integer", "default": 10}}}
    release("acme/hello", "2.0.0", config_schema=stricter)
    inst = _do_install(session, people, version_spec="1.0.0",
                       config={"api_key": "secret-1", "window_days": 3})
    with pytest.raises(MarketplaceError) as exc:
        upgrade(session, inst, version_spec="2.0.0", actor=people["member"])
    assert _err(exc).code == "invalid_config"
    assert [d["path"] for d in _err(exc).details] == ["$.config.region"]
    assert inst.version == "1.0.0"
    upgrade(session, inst, version_spec="2.0.0", actor=people["member"],
            config={"window_days": 3, "region": "eu"})
    assert inst.config == {"window_days": 3, "region": "eu", "batch": 10}
    assert installation_secrets(inst) == {"api_key": "secret-1"}


def test_upgrade_to_a_yanked_version_is_refused_but_the_installed_one_stays(session, people,
                                                                           release):
    v1 = release("acme/hello", "1.0.0")
    v2 = release("acme/hello", "1.1.0")
    inst = _do_install(session, people, version_spec="1.0.0")
    states.set_yanked(session, people["admin"], v2, yanked=True, reason="bad")
    states.set_yanked(session, people["admin"], v1, yanked=True, reason="bad too")
    with pytest.raises(MarketplaceError) as exc:
        upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
    assert _err(exc).code == "unresolvable"
    # The workspace keeps running its (now yanked) version; other installs still resolve.
    release("acme/other")
    assert _do_install(session, people, name="acme/other").version == "1.0.0"


# -- enable, disable, fail, uninstall ----------------------------------------------------------


def test_disable_enable_and_circuit_breaker(session, people, release):
    release()
    inst = _do_install(session, people)
    set_enabled(session, inst, False, people["member"], reason="noisy")
    assert (inst.enabled, inst.status.value, inst.disabled_reason) == (False, "disabled", "noisy")
    assert mark_failed(session, inst.id, "crashed") is inst
    assert inst.status.value == "disabled"  # the user's decision stands
    set_enabled(session, inst, True, people["member"])
    assert (inst.enabled, inst.status.value, inst.disabled_reason) == (True, "active", None)

    mark_failed(session, inst.id, "crashed 5 times in 10 minutes")
    assert (inst.enabled, inst.status.value) == (False, "failed")
    assert inst.disabled_reason == "crashed 5 times in 10 minutes"
    set_enabled(session, inst, True, people["member"])
    assert (inst.status.value, inst.disabled_reason) == ("active", None)
    assert mark_failed(session, "0" * 32, "gone") is None
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "installation.fail")).one()
    assert entry.actor_id is None and entry.reason == "crashed 5 times in 10 minutes"


def test_uninstall_brings_the_install_count_back_down(session, people, release):
    release()
    inst = _do_install(session, people)
    other = install(session, people["other_ws"], "acme/hello", consent=True,
                    actor=people["outsider"])
    gear = session.scalars(select(Gear)).one()
    session.refresh(gear)
    assert gear.install_count == 2
    uninstall(session, inst, people["member"])
    uninstall(session, other, people["outsider"])
    session.refresh(gear)
    assert gear.install_count == 0
    assert session.scalars(select(Installation)).all() == []
    # Never below zero, even if the count was reset meanwhile.
    inst = _do_install(session, people)
    gear.install_count = 0
    session.commit()
    uninstall(session, inst, people["member"])
    session.refresh(gear)
    assert gear.install_count == 0


def test_get_installation_is_scoped_to_its_workspace(session, people, release):
    release()
    inst = _do_install(session, people)
    assert get_installation(session, people["ws"], inst.id) is inst
    with pytest.raises(MarketplaceError) as exc:
        get_installation(session, people["other_ws"], inst.id)
    assert (_err(exc).status, _err(exc).code) == (404, "installation_not_found")


def test_every_change_is_audited_without_secret_values(session, people, release):
    release(config_schema={**SCHEMA, "required": []})
    inst = _do_install(session, people, config={"api_key": "audit-secret"})
    update_config(session, inst, {"window_days": 4}, people["member"])
    set_enabled(session, inst, False, people["member"])
    set_enabled(session, inst, True, people["member"])
    uninstall(session, inst, people["member"])
    entries = session.scalars(select(AuditEntry).where(
        AuditEntry.target_type == "installation").order_by(AuditEntry.id)).all()
    assert [e.action for e in entries] == [
        "installation.install", "installation.configure", "installation.disable",
        "installation.enable", "installation.uninstall"]
    assert all(e.actor_id == people["member"].id for e in entries)
    assert entries[0].after["secrets_set"] == ["api_key"]
    assert "audit-secret" not in repr([(e.before, e.after) for e in entries])


def test_lifecycle_signals_fire_after_commit(session, people, release):
    release("acme/hello", "1.0.0")
    release("acme/hello", "1.1.0")
    seen: list[tuple[str, events.InstallationEvent]] = []

    def listener(name):
        def receive(event):
            seen.append((name, event))
        return receive

    receivers = {name: listener(name) for name in
                 ("installed", "upgraded", "config", "enabled", "uninstalled")}
    events.on_installed.connect(receivers["installed"])
    events.on_upgraded.connect(receivers["upgraded"])
    events.on_config_changed.connect(receivers["config"])
    events.on_enabled_changed.connect(receivers["enabled"])
    events.on_uninstalled.connect(receivers["uninstalled"])

    def broken(event):
        raise RuntimeError("a listener bug")

    events.on_installed.connect(broken)
    try:
        inst = _do_install(session, people, version_spec="1.0.0")
        upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
        update_config(session, inst, {}, people["member"])  # no change: no signal
        set_enabled(session, inst, False, people["member"])
        uninstall(session, inst, people["member"])
    finally:
        for signal, receiver in [(events.on_installed, broken)] + [
                (getattr(events, f"on_{n}" if n not in ("config", "enabled") else
                         f"on_{n}_changed"), r) for n, r in receivers.items()]:
            signal.disconnect(receiver)
    assert [name for name, _ in seen] == ["installed", "upgraded", "enabled", "uninstalled"]
    assert seen[1][1].previous_version == "1.0.0"
    assert seen[2][1].enabled is False
    assert seen[3][1].gear == "acme/hello"


def test_a_quarantined_installation_does_not_block_other_changes(session, people, release):
    bad = release("acme/bad")
    release("acme/bad", "1.1.0")
    release("acme/hello")
    inst = _do_install(session, people, name="acme/bad", version_spec="1.0.0")
    bad.quarantined = True
    session.commit()
    assert _do_install(session, people).version == "1.0.0"
    with pytest.raises(MarketplaceError) as exc:
        set_enabled(session, inst, False, people["member"])
        set_enabled(session, inst, True, people["member"])
    assert _err(exc).code == "version_quarantined"
    upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
    assert inst.version == "1.1.0"


def test_a_new_version_or_config_runs_what_the_breaker_stopped_not_what_a_member_did(
        session, people, release):
    """The breaker judged the old version or config; a member's disable is theirs."""
    release(config_schema={"type": "object", "properties": {"label": {"type": "string"}}})
    release(version="1.1.0",
            config_schema={"type": "object", "properties": {"label": {"type": "string"}}})
    inst = _do_install(session, people, version_spec="1.0.0")
    mark_failed(session, inst.id, "crashed 5 times in 10 minutes")
    update_config(session, inst, {"label": "fixed"}, people["member"])
    assert (inst.enabled, inst.status.value, inst.disabled_reason) == (True, "active", None)

    mark_failed(session, inst.id, "crashed 5 times in 10 minutes")
    upgrade(session, inst, version_spec="1.1.0", actor=people["member"])
    assert (inst.version, inst.enabled, inst.status.value) == ("1.1.0", True, "active")

    set_enabled(session, inst, False, people["member"], reason="not this week")
    update_config(session, inst, {"label": "again"}, people["member"])
    upgrade(session, inst, version_spec="1.0.0", actor=people["member"])
    assert (inst.enabled, inst.status.value, inst.disabled_reason) == \
        (False, "disabled", "not this week")
