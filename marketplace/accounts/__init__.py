"""Accounts: users, passwords, publishers, workspaces and API tokens.

The service functions are re-exported here; ``init_app`` mounts the
``/api/v1/whoami`` endpoint.
"""

from __future__ import annotations

from flask import Flask

from marketplace.accounts.passwords import hash_password, verify_password
from marketplace.accounts.service import (
    add_publisher_member,
    add_workspace_member,
    authenticate_password,
    create_publisher,
    create_user,
    create_workspace,
    get_publisher,
    get_user,
    get_workspace,
    remove_publisher_member,
    remove_workspace_member,
    require_user,
    set_password,
)
from marketplace.accounts.tokens import (
    authenticate_token,
    create_token,
    hash_token,
    revoke_token,
    token_allows,
)
from marketplace.accounts.validation import (
    RESERVED_NAMES,
    normalize_email,
    validate_name,
    validate_scope,
)

__all__ = [
    "RESERVED_NAMES",
    "add_publisher_member",
    "add_workspace_member",
    "authenticate_password",
    "authenticate_token",
    "create_publisher",
    "create_token",
    "create_user",
    "create_workspace",
    "get_publisher",
    "get_user",
    "get_workspace",
    "hash_password",
    "hash_token",
    "init_app",
    "normalize_email",
    "remove_publisher_member",
    "remove_workspace_member",
    "require_user",
    "revoke_token",
    "set_password",
    "token_allows",
    "validate_name",
    "validate_scope",
    "verify_password",
]


def init_app(app: Flask) -> None:
    # the API goes through marketplace.auth, which imports this package's modules:
    # the blueprint loads when the app is built, not with the package
    from marketplace.accounts.api import bp

    app.register_blueprint(bp)
