"""The publisher's view of a version's review: status, the admin's reason, the findings."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from marketplace.admin.views import _findings, _report
from marketplace.db import get_session
from marketplace.registry import queries
from marketplace.web.session import current_viewer, login_required

bp = Blueprint("web_review", __name__)


@bp.get("/gears/<publisher>/<name>/<version>/review")
@login_required
def review_status(publisher: str, name: str, version: str) -> str:
    """Members of the publisher (and admins) see why a version was held or rejected."""
    row = queries.get_version(get_session(), publisher, name, version)
    viewer = current_viewer()
    if row is None or not viewer.manages(row.gear):
        abort(404, f"{publisher}/{name} {version} does not exist or is not yours")
    report = _report(row)
    return render_template("admin/publisher_review.html", v=row, report=report,
                           findings=_findings(report))
