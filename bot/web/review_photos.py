"""Claim photos for administrators: `GET /review/documents/<token>`.

/查看 sends each administrator links signed with the server's secret (core.review.document_url),
each naming one document and that administrator, valid three days. When a link is opened, the
administrator's scope is checked again (a revoked grant stops working at once), the view is
audited, and the photo is served from DATA_DIR/media (core.media); a photo not downloaded yet is
fetched from WeChat by its media_id. Answers are never cached.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, send_file

from core.admins import scope_of
from core.audit import audit
from core.media import path_for
from core.models import ClaimDocument
from core.review import ReviewError, read_document_token

log = logging.getLogger("huzhu.review")
bp = Blueprint("review", __name__)

_NO_STORE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
             "Referrer-Policy": "no-referrer"}


def _text(status: int, text: str) -> Response:
    return Response(text, status=status, mimetype="text/plain", headers=_NO_STORE)


@bp.get("/review/documents/<token>")
def document(token: str):
    x = current_app.extensions["huzhu"]
    try:
        document_id, openid = read_document_token(x.cfg, token)
    except ReviewError as e:
        if e.code == "expired_link":
            return _text(410, "链接已过期，请在公众号里重新发送 /查看 申请号。")
        return _text(403, "链接无效。")
    with x.db.session() as s:
        doc = s.get(ClaimDocument, document_id)
        if doc is None:
            return _text(404, "没有这张照片。")
        claim = doc.claim
        scope = scope_of(s, openid)
        if not scope.is_admin or not scope.covers_village(claim.household.village):
            audit(s, openid, "admin.refused", "claim_document", doc.id, None,
                  {"why": "out_of_scope", "claim": claim.number})
            return _text(403, "这张照片不在你管理的范围内。")
        audit(s, openid, "review.document", "claim_document", doc.id, None,
              {"claim": claim.number, "kind": doc.kind.value if doc.kind else None})
        sha, ctype, media_id = doc.sha256, doc.content_type, doc.media_id
    if sha and ctype:
        try:
            path = path_for(x.cfg.data_dir, sha, ctype)
        except KeyError:
            path = None
        if path is not None and path.is_file():
            response = send_file(path, mimetype=ctype, max_age=0, conditional=False)
            response.headers.update(_NO_STORE)
            return response
    if media_id:
        try:
            data, fetched_type = x.deliver_context.wechat.download_media(media_id)
        except Exception as exc:  # WeChat down, media expired (3 days)
            log.warning("document %s: media download failed: %s", document_id,
                        type(exc).__name__)
            return _text(404, "照片还没有收到，请稍后再试。")
        if not (fetched_type or "").startswith("image/"):
            return _text(404, "照片还没有收到，请稍后再试。")
        return Response(data, mimetype=fetched_type, headers=_NO_STORE)
    return _text(404, "照片还没有收到，请稍后再试。")
