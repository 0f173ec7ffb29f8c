"""The household's claims page link (`/h/claims/<token>`): signed with the server's secret for
one household, opened only by a WeChat user linked to it (bot/web/household_pages.py checks
that through WeChat's web authorization)."""
from __future__ import annotations

LINK_VALID_SECONDS = 90 * 86400  # a notice's link keeps working for a season
_SALT = "huzhu.household.claims"


class BadLink(ValueError):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why  # "bad" or "expired"


def _serializer(cfg):
    from itsdangerous import URLSafeTimedSerializer

    from core.config import secret_key

    return URLSafeTimedSerializer(secret_key(cfg), salt=_SALT)


def claims_url(cfg, household_id: int) -> str:
    token = _serializer(cfg).dumps({"h": int(household_id)})
    return f"{cfg.PUBLIC_URL.rstrip('/')}/h/claims/{token}"


def read_claims_token(cfg, token: str) -> int:
    from itsdangerous import BadSignature, SignatureExpired

    try:
        data = _serializer(cfg).loads(token, max_age=LINK_VALID_SECONDS)
    except SignatureExpired:
        raise BadLink("expired")
    except BadSignature:
        raise BadLink("bad")
    try:
        return int(data["h"])
    except (KeyError, TypeError, ValueError):
        raise BadLink("bad")
