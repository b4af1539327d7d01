"""Rules for names, emails and token scopes, shared by the CLI, the API and the web.

Publisher and workspace names become URL segments and namespaces
(``acme/rfm-score``), so they are short lowercase slugs, and names the
registry's own URLs or support staff would be confused by are reserved.
"""

from __future__ import annotations

from gears_sdk.patterns import compile as linear
from marketplace.errors import ValidationError

NAME_RE = linear(r"[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?")

RESERVED_NAMES = frozenset({
    "admin", "administrator", "api", "app", "assets", "auth", "catalog", "gear", "gears",
    "help", "login", "logout", "mail", "marketplace", "me", "new", "null", "official",
    "registry", "root", "security", "settings", "static", "support", "system", "www",
})

#: Scopes without an argument; the others are ``publish:<publisher>`` and
#: ``workspace:<workspace>``.
PLAIN_SCOPES = frozenset({"read", "admin"})
SCOPE_KINDS = frozenset({"publish", "workspace"})


def validate_name(name: str, *, what: str = "name", path: str = "$.name") -> str:
    """Return ``name`` if it is a valid, unreserved publisher/workspace name."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"{what} {name!r} is invalid: use 1-39 lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit",
            path=path, code="invalid_name",
        )
    if name in RESERVED_NAMES:
        raise ValidationError(f"{what} {name!r} is reserved; choose another",
                              path=path, code="reserved_name")
    return name


def normalize_email(email: str, *, path: str = "$.email") -> str:
    """Lower-case and check an email: one ``@``, something on both sides, no spaces.

    Deliverability is not checked here; a stricter check would only refuse
    valid addresses.
    """
    if not isinstance(email, str):
        raise ValidationError("email must be a string", path=path, code="invalid_email")
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if (not at or not local or not domain or "@" in domain or any(c.isspace() for c in email)
            or len(email) > 254 or domain.startswith(".") or domain.endswith(".")):
        raise ValidationError(f"{email!r} is not a valid email address",
                              path=path, code="invalid_email")
    return email


def validate_scope(scope: str) -> str:
    """Return ``scope`` if it is one the registry knows, else raise a ``ValueError``.

    Known scopes: ``read``, ``admin``, ``publish:<publisher>``, ``workspace:<workspace>``.
    """
    if not isinstance(scope, str):
        raise ValidationError("a scope must be a string", path="$.scopes", code="invalid_scope")
    if scope in PLAIN_SCOPES:
        return scope
    kind, sep, arg = scope.partition(":")
    if sep and kind in SCOPE_KINDS:
        if not NAME_RE.fullmatch(arg):
            raise ValidationError(
                f"scope {scope!r} names an invalid {'publisher' if kind == 'publish' else kind} "
                f"{arg!r}", path="$.scopes", code="invalid_scope")
        return scope
    raise ValidationError(
        f"unknown scope {scope!r}: use read, admin, publish:<publisher> or "
        "workspace:<workspace>", path="$.scopes", code="invalid_scope")
