"""The fund by period: the monthly figures behind the console's charts, and the quarterly report
(Haimen reports "每季季末" to the district): a quarter's income by source, subsidies, service
fees, balance at its start and end, participation, and per village the subsidies paid — as a
dict and as an xlsx workbook (openpyxl)."""
from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import ledger, scheme_years
from core.models import (BatchStatus, Claim, Household, JournalEntry, JournalLine, PayoutBatch,
                         PayoutLine, PayoutLineStatus, Pool)
from core.stats import members_paid, participation


class PeriodError(ValueError):
    pass


def parse_quarter(text: str) -> tuple[int, int]:
    """"2026Q1" / "2026-Q1" → (2026, 1); PeriodError otherwise."""
    m = re.fullmatch(r"\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*", text or "")
    if not m:
        raise PeriodError("季度的写法：2026Q1")
    return int(m.group(1)), int(m.group(2))


def quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    """[first day, first day of the next quarter)."""
    first = date(year, 3 * quarter - 2, 1)
    after = date(year + (quarter == 4), 1 if quarter == 4 else 3 * quarter + 1, 1)
    return first, after


def quarter_of(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def monthly(session: Session, pool_id: int, since: date, until: date) -> list[dict]:
    """Per month in [since, until): income (every source, recoveries not included), subsidies
    paid and service fees, in fen."""
    q = (select(JournalEntry.booked_on, JournalLine.account, func.sum(JournalLine.amount_fen))
         .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
         .where(JournalEntry.pool_id == pool_id, JournalEntry.booked_on >= since,
                JournalEntry.booked_on < until,
                (JournalLine.account.like("income:%")) | (JournalLine.account == ledger.SUBSIDY)
                | (JournalLine.account == ledger.FEE))
         .group_by(JournalEntry.booked_on, JournalLine.account))
    months: dict[str, dict] = {}
    day = since.replace(day=1)
    while day < until:
        months[f"{day:%Y-%m}"] = {"month": f"{day:%Y-%m}", "income_fen": 0, "paid_fen": 0,
                                  "fees_fen": 0}
        day = (day + timedelta(days=32)).replace(day=1)
    for booked, account, fen in session.execute(q):
        row = months.get(f"{booked:%Y-%m}")
        if row is None:
            continue
        if account == ledger.SUBSIDY:
            row["paid_fen"] += int(fen)
        elif account == ledger.FEE:
            row["fees_fen"] += int(fen)
        elif account != ledger.RECOVERY_INCOME:
            row["income_fen"] -= int(fen)
    return list(months.values())


def quarter_report(session: Session, pool_id: int, year: int, quarter: int) -> dict:
    first, after = quarter_bounds(year, quarter)
    pool = session.get(Pool, pool_id)
    figures = ledger.summary(session, pool_id, since=first, until=after)
    scheme_year = scheme_years.for_report(session, pool_id, after - timedelta(days=1))
    villages = participation(session, pool_id, scheme_year.id if scheme_year else None)
    paid = dict(((vid, (int(n), int(fen))) for vid, n, fen in session.execute(
        select(Household.village_id, func.count(PayoutLine.id),
               func.coalesce(func.sum(PayoutLine.amount_fen), 0))
        .join(Claim, Claim.id == PayoutLine.claim_id)
        .join(Household, Household.id == Claim.household_id)
        .join(PayoutBatch, PayoutBatch.id == PayoutLine.batch_id)
        .where(PayoutBatch.pool_id == pool_id, PayoutBatch.status == BatchStatus.confirmed,
               PayoutLine.status == PayoutLineStatus.paid,
               PayoutBatch.month >= f"{first:%Y-%m}", PayoutBatch.month < f"{after:%Y-%m}")
        .group_by(Household.village_id))))
    rows = [{**v, "rate": None if v["rate"] is None else str(v["rate"]),
             "claims_paid": paid.get(v["village_id"], (0, 0))[0],
             "paid_fen": paid.get(v["village_id"], (0, 0))[1]} for v in villages]
    return {"pool": pool.code, "pool_name": pool.name, "quarter": f"{year}Q{quarter}",
            "since": first.isoformat(), "until": (after - timedelta(days=1)).isoformat(),
            "income_fen": figures["income_fen"],
            "income_total_fen": sum(figures["income_fen"].values()),
            "paid_fen": figures["paid_fen"], "fees_fen": figures["fees_fen"],
            "recovered_fen": figures["recovered_fen"],
            "opening_fen": figures["carried_over_fen"], "balance_fen": figures["balance_fen"],
            "members": members_paid(session, pool_id, scheme_year.id if scheme_year else None),
            "villages": rows}


def write_quarter_xlsx(report: dict, out: BinaryIO, labels: dict) -> None:
    """The quarterly report as a workbook: a summary sheet and a sheet per village row.
    `labels` gives the words (templates/console/quarter_labels.yaml)."""
    from openpyxl import Workbook

    def yuan(fen: int) -> Decimal:
        return Decimal(int(fen)) / 100

    wb = Workbook()
    ws = wb.active
    ws.title = labels["summary"]
    ws.append([labels["title"].format(pool=report["pool_name"], quarter=report["quarter"])])
    ws.append([labels["period"], f"{report['since']} — {report['until']}"])
    ws.append([labels["opening"], yuan(report["opening_fen"])])
    for source, fen in report["income_fen"].items():
        ws.append([labels["income"].format(source=labels["sources"].get(source, source)),
                   yuan(fen)])
    ws.append([labels["income_total"], yuan(report["income_total_fen"])])
    ws.append([labels["paid"], yuan(report["paid_fen"])])
    ws.append([labels["fees"], yuan(report["fees_fen"])])
    ws.append([labels["recovered"], yuan(report["recovered_fen"])])
    ws.append([labels["balance"], yuan(report["balance_fen"])])
    ws.append([labels["members"], report["members"]])
    wv = wb.create_sheet(labels["villages"])
    wv.append(labels["village_header"])
    for v in report["villages"]:
        wv.append([v["village"], v["households"], v["persons"], v["persons_paid"],
                   v["rate_percent"], v["claims_paid"], yuan(v["paid_fen"])])
    wb.save(out)
