"""The admin pages (``/admin``) and the publisher's review page.

Admins see the review queue, a version's findings, file diff and capability
diff, and act on it (approve, reject, quarantine, re-vet); they read the
audit log and manage users, publishers and tokens. Publishers see why their
version was held or rejected (``/gears/<p>/<n>/<v>/review``). The pages use
the web catalog's layout, stylesheet, sessions and CSRF protection; every
action goes through the same service functions as the API, so it is
checked and audited the same way.
"""

from __future__ import annotations

from flask import Flask

from marketplace.admin.views import bp as review_bp
from marketplace.admin.views_manage import bp as manage_bp
from marketplace.admin.views_publisher import bp as publisher_bp


def init_app(app: Flask) -> None:
    for bp in (review_bp, manage_bp, publisher_bp):
        app.register_blueprint(bp)
