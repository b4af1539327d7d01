"""API tokens: creation, authentication, expiry, revocation and scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from marketplace.accounts import (
    authenticate_token,
    create_token,
    hash_token,
    remove_publisher_member,
    remove_workspace_member,
    revoke_token,
    token_allows,
    validate_scope,
)
from marketplace.db import utcnow
from marketplace.errors import MarketplaceError
from marketplace.models import ApiToken, AuditEntry


def test_token_is_stored_only_as_its_hash(session, make_user):
    user = make_user()
    plaintext, token = create_token(session, user, ["read"], name="laptop")
    session.commit()
    assert plaintext.startswith("gears_") and len(plaintext) > 40
    assert token.token_hash == hash_token(plaintext) != plaintext
    assert token.prefix == plaintext[:12]
    rows = session.scalars(select(ApiToken)).all()
    assert all(plaintext not in (r.token_hash, r.prefix) for r in rows)
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "token.create")).one()
    assert audit.after["scopes"] == ["read"] and plaintext not in str(audit.after)


def test_authenticate_and_last_used(session, make_user):
    user = make_user()
    plaintext, token = create_token(session, user, ["read"])
    session.commit()
    assert token.last_used_at is None
    assert authenticate_token(session, plaintext) is token
    first = token.last_used_at
    assert first is not None and first.tzinfo is not None
    assert authenticate_token(session, plaintext) is token
    assert token.last_used_at == first  # not rewritten within the minute
    token.last_used_at = first - timedelta(minutes=5)
    assert authenticate_token(session, plaintext) is token
    assert token.last_used_at > first - timedelta(minutes=5)


def test_unknown_and_malformed_tokens(session):
    assert authenticate_token(session, "gears_nope") is None
    assert authenticate_token(session, "not-a-token") is None
    assert authenticate_token(session, "gears_" + "x" * 500) is None


def test_expired_token_is_refused(session, make_user):
    user = make_user()
    plaintext, token = create_token(session, user, ["read"], expires_days=1)
    session.commit()
    assert authenticate_token(session, plaintext) is token
    token.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert authenticate_token(session, plaintext) is None
    assert not token_allows(token, "read")


def test_revoked_token_is_refused(session, make_user):
    user = make_user()
    plaintext, token = create_token(session, user, ["read"])
    revoke_token(session, token, reason="lost laptop")
    session.commit()
    assert authenticate_token(session, plaintext) is None
    revoke_token(session, token)  # harmless twice
    actions = session.scalars(select(AuditEntry.action)).all()
    assert actions.count("token.revoke") == 1


def test_inactive_user_tokens_are_refused(session, make_user):
    user = make_user()
    plaintext, _ = create_token(session, user, ["read"])
    user.is_active = False
    session.commit()
    assert authenticate_token(session, plaintext) is None


@pytest.mark.parametrize("scope", ["read", "admin", "publish:acme", "workspace:demo-1"])
def test_valid_scopes(scope):
    assert validate_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "write", "publish:", "publish:Acme", "workspace:a_b",
                                   "admin:x", "publish:acme:x"])
def test_unknown_scopes_raise_value_error(scope):
    with pytest.raises(ValueError, match="scope"):
        validate_scope(scope)


def test_publish_scope_needs_membership(session, make_user, make_publisher):
    dev = make_user(role="developer")
    publisher = make_publisher(owner=dev, name="acme")
    _, token = create_token(session, dev, ["publish:acme"])
    session.commit()
    assert token_allows(token, "publish:acme")
    assert token_allows(token, "read")
    assert not token_allows(token, "publish:globex")
    assert not token_allows(token, "admin")
    remove_publisher_member(session, publisher, dev)
    session.commit()
    assert not token_allows(token, "publish:acme")


def test_workspace_scope_needs_membership(session, make_user, make_workspace):
    biz = make_user(role="business")
    workspace = make_workspace(member=biz, name="demo")
    _, token = create_token(session, biz, ["workspace:demo"])
    session.commit()
    assert token_allows(token, "workspace:demo")
    assert not token_allows(token, "workspace:other")
    remove_workspace_member(session, workspace, biz)
    session.commit()
    assert not token_allows(token, "workspace:demo")


def test_admin_scope_allows_everything_only_for_admins(session, make_user):
    from marketplace.models import Role

    admin = make_user(role="admin")
    _, token = create_token(session, admin, ["admin"])
    session.commit()
    assert token_allows(token, "publish:anything")
    assert token_allows(token, "workspace:anything")
    assert token_allows(token, "admin")
    admin.role = Role.developer  # demoted
    session.commit()
    assert not token_allows(token, "admin")
    assert not token_allows(token, "publish:anything")


def test_scopes_the_user_cannot_hold_are_refused_at_creation(session, make_user):
    dev = make_user(role="developer")
    with pytest.raises(MarketplaceError, match="not an admin"):
        create_token(session, dev, ["admin"])
    with pytest.raises(MarketplaceError, match="not a member"):
        create_token(session, dev, ["publish:acme"])
    with pytest.raises(ValueError, match="unknown scope"):
        create_token(session, dev, ["bogus"])
    with pytest.raises(ValueError, match="at least one scope"):
        create_token(session, dev, [])
