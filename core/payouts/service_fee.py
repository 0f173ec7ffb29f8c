"""The service fee (服务费): the scheme's rate of the period's paid subsidies, posted per period."""
from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ledger, scheme_years
from core.audit import audit
from core.models import JournalEntry, Pool
from core.money import format_yuan, mul_rate
from core.payouts.common import PayoutError


_PERIOD = re.compile(r"^(\d{4})(?:Q([1-4])|-(0[1-9]|1[0-2]))?$")


def period_bounds(label: str) -> tuple[date, date]:
    """`2026Q1`, `2026-03` or `2026` → [start, end) dates."""
    m = _PERIOD.match(label or "")
    if not m:
        raise PayoutError("bad_period", period=label)
    year = int(m.group(1))
    if m.group(2):
        q = int(m.group(2))
        start = date(year, 3 * q - 2, 1)
        end = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
    elif m.group(3):
        month = int(m.group(3))
        start = date(year, month, 1)
        end = date(year + (month == 12), 1 if month == 12 else month + 1, 1)
    else:
        start, end = date(year, 1, 1), date(year + 1, 1, 1)
    return start, end


def last_period(every: str, today: date) -> str:
    """The latest period of that kind (month | quarter | year) that ended before `today`."""
    if every == "month":
        prev = today.replace(day=1) - timedelta(days=1)
        return f"{prev.year:04d}-{prev.month:02d}"
    if every == "year":
        return f"{today.year - 1:04d}"
    q = (today.month - 1) // 3 + 1
    return f"{today.year - 1:04d}Q4" if q == 1 else f"{today.year:04d}Q{q - 1}"


def service_fee_due(session: Session, pool_id: int, label: str) -> tuple[int, int, list[dict]]:
    """(fee, paid subsidies, parts) for a period: each scheme year's rate applies from its start
    until the next scheme year starts, to the subsidies booked in that stretch."""
    start, end = period_bounds(label)
    years = scheme_years.of_pool(session, pool_id)
    if not years:
        raise PayoutError("no_scheme", pool=pool_id)
    parts, fee, paid_total = [], 0, 0
    for i, year in enumerate(years):
        seg_start = start if i == 0 else max(start, year.start)
        seg_end = min(end, years[i + 1].start) if i + 1 < len(years) else end
        if seg_start >= seg_end:
            continue
        paid = ledger.totals(session, pool_id, until=seg_end, since=seg_start).get(
            ledger.SUBSIDY, 0)
        rate = year.scheme.service_fee.rate
        part = mul_rate(paid, rate) if paid > 0 else 0
        parts.append({"from": seg_start.isoformat(), "until": seg_end.isoformat(),
                      "paid_fen": paid, "rate": str(rate), "fee_fen": part})
        fee += part
        paid_total += paid
    return fee, paid_total, parts


def post_service_fee(session: Session, pool_id: int, label: str, actor: str) -> JournalEntry | None:
    """Post the period's service fee owed to the service provider (idempotent by
    `fee:<pool>:<period>`); None when nothing was paid in the period."""
    pool = session.get_one(Pool, pool_id)
    start, end = period_bounds(label)
    ref = f"fee:{pool.code}:{label}"
    existing = session.scalar(select(JournalEntry).where(JournalEntry.ref == ref))
    if existing is not None:
        return existing
    fee, paid, parts = service_fee_due(session, pool_id, label)
    if fee <= 0:
        return None
    rates = "、".join(sorted({p["rate"] for p in parts if p["fee_fen"]}))
    entry = ledger.post(session, pool_id, "fee", ref, {ledger.FEE: fee, ledger.FEE_PAYABLE: -fee},
                        end - timedelta(days=1),
                        f"服务费 {label}：{format_yuan(paid)} × {rates}")
    audit(session, actor, "payout.service_fee", "pool", f"{pool.code}:{label}", None,
          {"fee_fen": fee, "paid_fen": paid, "parts": parts})
    return entry
