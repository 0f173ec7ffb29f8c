"""Links to a claim's photos for an administrator (served by the web app's review pages)."""
from __future__ import annotations

from core.review.errors import ReviewError


LINK_VALID_SECONDS = 72 * 3600
_LINK_SALT = "huzhu.review.document"


def _serializer(cfg):
    from itsdangerous import URLSafeTimedSerializer

    from core.config import secret_key

    return URLSafeTimedSerializer(secret_key(cfg), salt=_LINK_SALT)


def document_url(cfg, document_id: int, openid: str) -> str:
    """A link to one claim document for one administrator: signed with the server's secret,
    valid LINK_VALID_SECONDS; the server checks again, when it is opened, that this
    administrator's scope still covers the claim."""
    token = _serializer(cfg).dumps({"d": int(document_id), "a": openid})
    return f"{cfg.PUBLIC_URL.rstrip('/')}/review/documents/{token}"


def read_document_token(cfg, token: str) -> tuple[int, str]:
    """(document id, administrator's openid) of a link; ReviewError bad_link / expired_link."""
    from itsdangerous import BadSignature, SignatureExpired

    try:
        data = _serializer(cfg).loads(token, max_age=LINK_VALID_SECONDS)
    except SignatureExpired:
        raise ReviewError("expired_link")
    except BadSignature:
        raise ReviewError("bad_link")
    try:
        return int(data["d"]), str(data["a"])
    except (KeyError, TypeError, ValueError):
        raise ReviewError("bad_link")
