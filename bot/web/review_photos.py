"""Claim photos for administrators: `GET /review/documents/<token>`.

/查看 sends each administrator links signed with the server's secret (core.review.document_url),
each naming one document and that administrator, valid three days. A link is not a bearer
link: opening it goes through WeChat's web authorization (网页授权, `snsapi_base`, silent
inside WeChat) — the browser is sent to WECHAT_OPEN_BASE/connect/oauth2/authorize and comes
back with a code, which is exchanged for the opener's openid (WECHAT_API_BASE/sns/oauth2/
access_token). The photo is shown only when the opener is the administrator the link was made
for and their scope still covers the claim (a revoked grant stops working at once); anything
else gets the same "not found" page, and a wrong opener is audited. The view is audited and the
photo served from DATA_DIR/media (core.media); a photo not downloaded yet is fetched from WeChat
by its media_id. Answers are never cached, and carry no-referrer, nosniff, no framing.
"""
from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, send_file

from bot.web.wechat_login import who_opens
from core.admins import scope_of
from core.audit import audit
from core.media import path_for
from core.messages import render
from core.models import ClaimDocument
from core.review import ReviewError, read_document_token

log = logging.getLogger("huzhu.review")
bp = Blueprint("review", __name__)

SECURITY_HEADERS = {
    "Cache-Control": "private, no-store", "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
STATE_COOKIE = "huzhu_review_state"

# the page's words are in templates/messages/review_photo_page.j2, one per status
NOT_FOUND, EXPIRED, NOT_YET = "not_found", "expired", "not_yet"


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _page(status: int, what: str) -> Response:
    return Response(render("review_photo_page", status=what), status=status, mimetype="text/html")


def _refused(x, opener: str | None, document_id: int, why: str) -> Response:
    if opener:
        with x.db.session() as s:
            audit(s, opener, "admin.refused", "claim_document", document_id, None, {"why": why})
    return _page(404, NOT_FOUND)


@bp.get("/review/documents/<token>")
def document(token: str):
    x = current_app.extensions["huzhu"]
    try:
        document_id, admin = read_document_token(x.cfg, token)
    except ReviewError as e:
        if e.code == "expired_link":
            return _page(410, EXPIRED)
        return _page(404, NOT_FOUND)
    here = f"{x.cfg.PUBLIC_URL.rstrip('/')}/review/documents/{token}"
    step = who_opens(x.cfg, here, STATE_COOKIE, f"document {document_id}")
    if step.redirect is not None:
        return step.redirect
    if step.refused == "state":
        return _refused(x, None, document_id, "state")
    if step.openid is None:
        return _page(404, NOT_FOUND)
    opener = step.openid
    if not hmac.compare_digest(opener, admin):
        return _refused(x, opener, document_id, "not_the_addressee")
    with x.db.session() as s:
        doc = s.get(ClaimDocument, document_id)
        if doc is None:
            return _page(404, NOT_FOUND)
        claim = doc.claim
        scope = scope_of(s, opener)
        if not scope.is_admin or not scope.covers_village(claim.household.village):
            audit(s, opener, "admin.refused", "claim_document", doc.id, None,
                  {"why": "out_of_scope", "claim": claim.number})
            return _page(404, NOT_FOUND)
        audit(s, opener, "review.document", "claim_document", doc.id, None,
              {"claim": claim.number, "kind": doc.kind.value if doc.kind else None})
        sha, ctype, media_id = doc.sha256, doc.content_type, doc.media_id
    if sha and ctype:
        try:
            path = path_for(x.cfg.data_dir, sha, ctype)
        except KeyError:
            path = None
        if path is not None and path.is_file():
            return send_file(path, mimetype=ctype, max_age=0, conditional=False)
    if media_id:
        try:
            data, fetched_type = x.deliver_context.wechat.download_media(media_id)
        except Exception as exc:  # WeChat down, media expired (3 days)
            log.warning("document %s: media download failed: %s", document_id,
                        type(exc).__name__)
            return _page(404, NOT_YET)
        if not (fetched_type or "").startswith("image/"):
            return _page(404, NOT_YET)
        return Response(data, mimetype=fetched_type)
    return _page(404, NOT_YET)
