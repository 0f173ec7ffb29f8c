"""The monthly public disclosure (公示) of a pool: the subsidies paid that month — village,
masked name (张*三), DRG group, amount, date — and the month's fund figures from the ledger.

- `build(session, pool_id, month)` → a JSON-able dict (amounts `*_fen`, names masked, no ID
  numbers): what `huzhu report disclosure --json` prints and what the poster is drawn from.
- `markdown_parts(data)` → the group-chat markdown, rendered from templates/messages/disclosure_*
  and split into messages of at most 4096 bytes of UTF-8 (each part after the first says which
  part it is).
- `publish(session, pool_id, month)` → queues the posts to every group chat of the pool's
  villages (paced, core/groups.py), the poster, and a short mass send to each village's
  followers; idempotent per pool and month: publishing again posts nothing unless the month's
  paid subsidies changed since (a batch confirmed late), then it posts the whole list again
  marked as an update. Each village's group gets the pool's totals and fund figures and the
  list of its own village's subsidies (`for_village`), so a town or county pool does not post
  thousands of lines to every village; the full list is `huzhu report disclosure`.
- `publish_due(session, today)` → what the daily job publishes: each pool's previous month
  once the day of the month reaches its scheme's `disclosure.day`.

"Paid that month" = the paid lines of the pool's confirmed payout batch of that month
(PayoutBatch.month); the date shown is the day the batch was confirmed.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import ledger, scheme_years
from core.audit import audit
from core.crypto import mask_name
from core.groups import (enqueue_mass, enqueue_posts, followers_of, groups_of, pool_village_ids,
                         split_parts)
from core.messages import render
from core.models import (AuditLog, BatchStatus, Claim, DrgGroup, Household, Member, PayoutBatch,
                         PayoutLine, PayoutLineStatus, Pool, Village)
from core.outbox import as_utc
from core.stats import members_paid

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
PAGE_RESERVE = 200  # bytes kept free in each part for its "（第 2/3 条）" line
ACTION = "disclosure.published"


class DisclosureError(ValueError):
    pass


def month_range(month: str) -> tuple[date, date]:
    """'2026-03' → (2026-03-01, 2026-04-01): the month as [first day, first day of the next)."""
    m = _MONTH.match(month or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise DisclosureError(f"月份应为 YYYY-MM，例如 2026-03，得到 {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    first = date(y, mo, 1)
    return first, date(y + (mo == 12), mo % 12 + 1, 1)


def previous_month(day: date) -> str:
    y, m = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return f"{y:04d}-{m:02d}"


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _tz(tz) -> ZoneInfo:
    if tz is not None:
        return tz
    from core.config import load_config

    return load_config(validate=False).tz


def _local_date(value: datetime | None, tz: ZoneInfo) -> date | None:
    return as_utc(value).astimezone(tz).date() if value is not None else None


def build(session: Session, pool_id: int, month: str, tz: ZoneInfo | None = None) -> dict:
    """The month's disclosure as a JSON-able dict."""
    tz = _tz(tz)
    first, after = month_range(month)
    pool = session.get(Pool, pool_id)
    if pool is None:
        raise DisclosureError(f"没有这个资金池：{pool_id}")
    q = (select(PayoutLine.id, PayoutLine.amount_fen, PayoutBatch.number, PayoutBatch.confirmed_at,
                Member.name, Village.full_name, Village.name, Claim.drg_code, DrgGroup.name)
         .join(PayoutBatch, PayoutBatch.id == PayoutLine.batch_id)
         .join(Claim, Claim.id == PayoutLine.claim_id)
         .join(Member, Member.id == Claim.member_id)
         .join(Household, Household.id == Claim.household_id)
         .join(Village, Village.id == Household.village_id)
         .outerjoin(DrgGroup, DrgGroup.code == Claim.drg_code)
         .where(PayoutBatch.pool_id == pool_id, PayoutBatch.month == month,
                PayoutBatch.status == BatchStatus.confirmed,
                PayoutLine.status == PayoutLineStatus.paid)
         .order_by(Village.id, PayoutLine.id))
    rows, line_ids = [], []
    for line_id, amount, batch, confirmed, name, village, village_name, drg, drg_name in \
            session.execute(q):
        line_ids.append(line_id)
        paid_on = _local_date(confirmed, tz)
        rows.append({"village": village, "village_name": village_name, "name": mask_name(name),
                     "drg_code": drg, "drg_name": drg_name or drg or "",
                     "amount_fen": int(amount), "date": paid_on.isoformat() if paid_on else None,
                     "batch": batch})
    fund = ledger.summary(session, pool_id, since=first, until=after)
    year = scheme_years.for_report(session, pool_id, after - timedelta(days=1))
    return {
        "pool": pool.code, "pool_name": pool.name, "month": month,
        "period": {"since": first.isoformat(), "until": after.isoformat()},
        "subsidies": rows, "count": len(rows), "total_fen": sum(r["amount_fen"] for r in rows),
        "fund": {**fund, "income_total_fen": sum(fund["income_fen"].values())},
        "members": members_paid(session, pool_id, year.id if year else None),
        "digest": hashlib.sha256(",".join(map(str, sorted(line_ids))).encode()).hexdigest()[:16],
    }


def for_village(data: dict, village: str) -> dict:
    """The disclosure as one village's group sees it: the pool's figures, the village's list."""
    rows = [r for r in data["subsidies"] if r["village"] == village]
    name = village.split("/", 1)[-1]
    return {**data, "subsidies": rows, "village": village, "village_name": name,
            "village_count": len(rows), "village_total_fen": sum(r["amount_fen"] for r in rows)}


def _context(data: dict) -> dict:
    y, m = (int(x) for x in data["month"].split("-"))
    return {"d": data, "year": y, "month": m}


def markdown_blocks(data: dict, update: bool = False) -> list[str]:
    ctx = _context(data)
    blocks = [render("disclosure_header", update=update, **ctx)]
    if data["subsidies"]:
        blocks.append(render("disclosure_list_title", **ctx))
        for row in data["subsidies"]:
            blocks.append(render("disclosure_row", row=row, **ctx))
    blocks.append(render("disclosure_fund", **ctx))
    blocks.append(render("disclosure_footer", **ctx))
    return blocks


def markdown_parts(data: dict, update: bool = False, limit: int = 4096) -> list[str]:
    """The group-chat markdown in messages of at most `limit` bytes of UTF-8."""
    parts = split_parts(markdown_blocks(data, update), limit=limit, reserve=PAGE_RESERVE)
    if len(parts) == 1:
        return ["\n".join(parts[0])]
    ctx = _context(data)
    out = []
    for i, blocks in enumerate(parts, start=1):
        page = render("disclosure_page", page=i, pages=len(parts), **ctx)
        out.append("\n".join([page, *blocks]) if i > 1 else "\n".join([*blocks, page]))
    return out


def mass_text(data: dict) -> str:
    return render("disclosure_mass", **_context(data))


def _lock(session: Session, name: str) -> None:
    """Serialise publishers of one pool and month (SQLite: writers are serialised already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(name.encode()))))


def last_published(session: Session, pool: Pool, month: str) -> AuditLog | None:
    return session.scalar(select(AuditLog).where(AuditLog.action == ACTION,
                                                 AuditLog.entity == "disclosure",
                                                 AuditLog.entity_id == f"{pool.code}:{month}")
                          .order_by(AuditLog.id.desc()).limit(1))


def publish(session: Session, pool_id: int, month: str, *, tz: ZoneInfo | None = None,
            actor: str = "system", force: bool = False, now: datetime | None = None) -> dict:
    """Queue the month's disclosure to the pool's group chats and village followers, in the
    caller's transaction. Returns {posted, reason?, groups, messages, count, total_fen}."""
    pool = session.get(Pool, pool_id)
    if pool is None:
        raise DisclosureError(f"没有这个资金池：{pool_id}")
    month_range(month)
    _lock(session, f"huzhu.disclosure:{pool_id}:{month}")
    data = build(session, pool_id, month, tz)
    last = last_published(session, pool, month)
    if last is not None and not force and (last.after or {}).get("digest") == data["digest"]:
        return {"posted": False, "reason": "already", "groups": 0, "messages": 0,
                "count": data["count"], "total_fen": data["total_fen"]}
    update = last is not None
    village_ids = pool_village_ids(session, pool_id)
    groups = groups_of(session, village_ids)
    names = dict(session.execute(select(Village.id, Village.full_name)
                                 .where(Village.id.in_(village_ids or [-1]))).all())
    per_village: dict[int, tuple[list[str], dict]] = {}
    messages = 0
    for g in groups:
        if g.village_id not in per_village:
            local = for_village(data, names[g.village_id])
            per_village[g.village_id] = (markdown_parts(local, update=update),
                                         {k: v for k, v in local.items() if k != "digest"})
        parts, poster = per_village[g.village_id]
        batch = [("wecom.post", {"markdown": p}) for p in parts]
        batch.append(("wecom.poster", {"poster": poster,
                                       "name": f"{pool.code}-{month}-{g.village_id}"}))
        messages += len(enqueue_posts(session, g.key, batch, now=now))
    text = mass_text(data)
    for village in session.scalars(select(Village).where(Village.id.in_(village_ids or [-1]))):
        if followers_of(session, village.id):
            enqueue_mass(session, village, text)
    audit(session, actor, ACTION, "disclosure", f"{pool.code}:{month}", None,
          {"digest": data["digest"], "count": data["count"], "total_fen": data["total_fen"],
           "groups": len(groups), "messages": messages, "update": update})
    return {"posted": True, "update": update, "groups": len(groups), "messages": messages,
            "count": data["count"], "total_fen": data["total_fen"]}


def _pool_has_month(session: Session, pool_id: int, month: str) -> bool:
    first, after = month_range(month)
    return bool(scheme_years.overlapping(session, pool_id, first, after - timedelta(days=1)))


def publish_due(session: Session, today: date, tz: ZoneInfo | None = None) -> list[dict]:
    """The monthly disclosures due `today`, in the caller's transaction: every pool whose
    scheme's `disclosure.day` has come this month publishes the previous month (idempotent, so
    it may run every day and catches up after a pause). Returns one dict per pool published:
    {pool, month, posted, …} as `publish` returns them."""
    month = previous_month(today)
    results = []
    for pool in list(session.scalars(select(Pool).order_by(Pool.id))):
        year = scheme_years.running(session, pool.id, today) or scheme_years.running(
            session, pool.id, today.replace(day=1) - timedelta(days=1))
        if year is None or not _pool_has_month(session, pool.id, month):
            continue
        if today.day < year.scheme.disclosure.day:
            continue
        result = publish(session, pool.id, month, tz=tz)
        results.append({"pool": pool.code, "month": month, **result})
    return results
