"""The designer for a stored pool: what `/测算` answers and its picture shows (the running
year's scheme, its paid members, the built-in weights, a simulated year), and the signed link
to the picture. Reads only; the same inputs give the same figures (the seed is the year's id),
so the picture drawn when the link is opened matches the answer."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from core.design.errors import DesignError, design_text
from core.design.fit import DEFAULT_RESERVE, Design, design
from core.design.pool import PoolFacts, pool_facts
from core.design.simulate import Simulation, simulate
from core.design.weights import default_weights
from core.models import Pool
from core.scheme import Scheme, national_groups

CHAT_YEARS = 2000  # simulated years behind /测算
LINK_VALID_SECONDS = 72 * 3600
_LINK_SALT = "huzhu.design.chart"


def quoted_groups(scheme: Scheme) -> tuple[str, ...]:
    """The groups a design quotes: the national list and any other group the scheme's own
    table names, without the groups the scheme excludes."""
    own = set(scheme.benefit.quotas_fen) - set(national_groups())
    return tuple(c for c in (*national_groups(), *sorted(own))
                 if c not in scheme.benefit.quota_excluded)


@dataclass
class PoolDesign:
    facts: PoolFacts
    design: Design
    simulation: Simulation


def for_pool(session: Session, pool: Pool, today: date) -> PoolDesign:
    facts = pool_facts(session, pool, today)
    if facts.members <= 0:
        raise DesignError(design_text("service.for_pool.1", name=pool.name))
    scheme = facts.scheme
    codes = quoted_groups(scheme)
    funds = facts.members * scheme.contribution.per_person_fen
    d = design(scheme, default_weights(codes), codes, facts.members, funds, DEFAULT_RESERVE,
               facts.mix or None, facts.continuing_share, scheme.benefit.quota_excluded)
    return PoolDesign(facts, d, simulate(d, CHAT_YEARS, seed=facts.year.id))


def _serializer(cfg):
    from itsdangerous import URLSafeTimedSerializer

    from core.config import secret_key

    return URLSafeTimedSerializer(secret_key(cfg), salt=_LINK_SALT)


def chart_url(cfg, pool_id: int) -> str:
    """A link to the pool's design picture, signed, valid LINK_VALID_SECONDS. The picture holds
    only the fund's totals (no person), like the monthly disclosure."""
    token = _serializer(cfg).dumps({"p": int(pool_id)})
    return f"{cfg.PUBLIC_URL.rstrip('/')}/design/{token}.png"


def read_chart_token(cfg, token: str) -> int | None:
    """The pool id of a link, or None when it is forged or expired."""
    from itsdangerous import BadSignature

    try:
        return int(_serializer(cfg).loads(token, max_age=LINK_VALID_SECONDS)["p"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
