"""Payment and fund commands:

    huzhu payments record HOUSEHOLD AMOUNT [--channel cash|transfer]
    huzhu payments record-list FILE.csv [--channel cash|transfer] [--json]   a village's list
    huzhu payments exceptions [--all] [--json]      payments that could not be applied
    huzhu payments resolve ID --note TEXT           an administrator dealt with one
    huzhu funds add --pool P --source SOURCE AMOUNT [--note TEXT]
    huzhu ledger check
    huzhu report fund --pool P [--json]
"""
from __future__ import annotations

import getpass
import sys
import uuid
from datetime import datetime

from sqlalchemy import select

from bot.cli import app_context, print_json, subcommands

SOURCES = ("personal", "collective", "town", "charity", "government", "donor", "interest")


def register(sub) -> None:
    g = subcommands(sub, "payments", "household payments")
    p = g.add_parser("record", help="record an offline payment (cash or bank transfer)")
    p.add_argument("household", metavar="HOUSEHOLD")
    p.add_argument("amount", metavar="AMOUNT", help="yuan, e.g. 150.00: exactly what is due")
    p.add_argument("--channel", choices=["cash", "transfer"], default="cash")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_payments_record)
    p = g.add_parser("record-list", help="record a village's list of offline payments at once "
                                         "(CSV: 户号,金额 per line), all or nothing")
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--channel", choices=["cash", "transfer"], default="cash")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_payments_record_list)
    p = g.add_parser("exceptions", help="payments that could not be applied")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_payments_exceptions)
    p = g.add_parser("resolve", help="mark a payment exception as dealt with")
    p.add_argument("id", type=int)
    p.add_argument("--note", required=True)
    p.set_defaults(func=cmd_payments_resolve)

    g = subcommands(sub, "funds", "income that is not a household's payment")
    p = g.add_parser("add", help="record a donation, top-up, grant or interest")
    p.add_argument("--pool", required=True)
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("amount", metavar="AMOUNT", help="yuan, e.g. 10000.00")
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_funds_add)

    g = subcommands(sub, "ledger", "the fund's double-entry ledger")
    g.add_parser("check", help="prove every journal entry balances").set_defaults(
        func=cmd_ledger_check)

    g = subcommands(sub, "report", "reports")
    p = g.add_parser("fund", help="the pool's income by source, payouts, fees and balance")
    p.add_argument("--pool", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report_fund)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def _fail(message: str, code: int = 2) -> int:
    print(f"huzhu: {message}", file=sys.stderr)
    return code


def _yuan(text: str) -> int | None:
    from core.money import parse_yuan

    try:
        return parse_yuan(text)
    except ValueError:
        return None


# -- payments ---------------------------------------------------------------------------------

def cmd_payments_record(args) -> int:
    from core import payments
    from core.messages import render
    from core.models import Household
    from core.money import format_yuan

    amount = _yuan(args.amount)
    if amount is None:
        return _fail(f"amount {args.amount!r} is not an amount in yuan (e.g. 150.00)")
    x = app_context()
    now = datetime.now(x.cfg.tz)
    try:
        with x.db.session() as s:
            household = s.scalar(select(Household).where(Household.number == args.household.upper()))
            if household is None:
                return _fail(f"no household {args.household}")
            payment = payments.record_offline(s, household, amount, args.channel, _actor(), now)
            doc = {"household": household.number, "amount_fen": payment.amount_fen,
                   "channel": payment.channel, "transaction_id": payment.transaction_id}
    except payments.PaymentError as e:
        message = render("payment_record_refused", code=e.code, household=args.household.upper(),
                         usage="huzhu payments record HOUSEHOLD AMOUNT [--channel cash|transfer]",
                         **e.detail)
        return _fail(f"refused ({e.code}): {message}", 1)
    x.waker.wake()
    if args.json:
        print_json(doc)
    else:
        print(f"recorded {doc['household']}: {format_yuan(doc['amount_fen'])} "
              f"{doc['channel']} ({doc['transaction_id']})")
    return 0


def _payment_list(path: str) -> tuple[list[tuple[str, int]], list[str]]:
    """The rows of a payments list (UTF-8 CSV, Excel's BOM allowed; a header line 户号,金额 is
    skipped): (household number, fen), and the lines that are not a number and an amount."""
    import csv

    rows, bad = [], []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for line, cells in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in cells]
            if not any(cells) or (line == 1 and cells[0] == "户号"):
                continue
            fen = _yuan(cells[1]) if len(cells) >= 2 else None
            if fen is None or not cells[0]:
                bad.append(f"line {line}: {','.join(cells)[:40]}")
                continue
            rows.append((cells[0].upper(), fen))
    return rows, bad


def cmd_payments_record_list(args) -> int:
    from core import payments
    from core.messages import render
    from core.models import Household
    from core.money import format_yuan

    try:
        rows, bad = _payment_list(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    if bad:
        return _fail("not a household number and an amount in yuan, nothing recorded: "
                     + "; ".join(bad[:10]))
    numbers = [n for n, _fen in rows]
    if len(set(numbers)) != len(numbers):
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        return _fail(f"households listed twice, nothing recorded: {', '.join(twice[:10])}")
    x = app_context()
    now = datetime.now(x.cfg.tz)
    try:
        with x.db.session() as s:
            ids = dict(s.execute(select(Household.number, Household.id)
                                 .where(Household.number.in_(numbers))).all())
            unknown = [n for n in numbers if n not in ids]
            if unknown:
                return _fail(f"no household {', '.join(unknown[:10])}; nothing recorded")
            done = payments.record_offline_many(s, [(ids[n], fen) for n, fen in rows],
                                                args.channel, _actor(), now)
    except payments.PaymentError as e:
        message = render("payment_record_refused", code=e.code,
                         household=e.details.get("household", ""),
                         usage="huzhu payments record-list FILE.csv [--channel cash|transfer]",
                         **{k: v for k, v in e.details.items() if k != "household"})
        return _fail(f"refused ({e.code}), nothing recorded: {message}", 1)
    x.waker.wake()
    total = sum(fen for _n, fen in rows)
    if args.json:
        print_json({"payments": done, "total_fen": total, "channel": args.channel})
    else:
        print(f"recorded {done} payments, {format_yuan(total)} {args.channel}")
    return 0


def cmd_payments_exceptions(args) -> int:
    from core.money import format_yuan
    from core.payments import list_exceptions

    x = app_context()
    with x.db.session() as s:
        rows = [{"id": e.id, "kind": e.kind, "out_trade_no": e.out_trade_no,
                 "transaction_id": e.transaction_id, "household": e.detail.get("household"),
                 "total_fen": e.detail.get("total_fen"), "due_fen": e.detail.get("due_fen"),
                 "created_at": e.created_at, "resolved_at": e.resolved_at,
                 "resolution": e.detail.get("resolution")}
                for e in list_exceptions(s, include_resolved=args.all)]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no payment exceptions")
    for r in rows:
        print(f"#{r['id']} {r['kind']:<18} {r['household'] or '-':<10} "
              f"{format_yuan(r['total_fen']) or '-':>12} order {r['out_trade_no']} "
              f"transaction {r['transaction_id']}"
              + (f" resolved: {r['resolution']}" if r["resolved_at"] else ""))
    return 0


def cmd_payments_resolve(args) -> int:
    from core.payments import PaymentError, resolve_exception

    x = app_context()
    try:
        with x.db.session() as s:
            resolve_exception(s, args.id, _actor(), args.note)
    except PaymentError:
        return _fail(f"no payment exception #{args.id}")
    print(f"payment exception #{args.id} resolved")
    return 0


# -- funds, ledger, report ----------------------------------------------------------------------

def _pool(s, code: str):
    from core.models import Pool

    return s.scalar(select(Pool).where(Pool.code == code))


def cmd_funds_add(args) -> int:
    from core import ledger
    from core.audit import audit
    from core.money import format_yuan

    amount = _yuan(args.amount)
    if amount is None or amount <= 0:
        return _fail(f"amount {args.amount!r} must be a positive amount in yuan (e.g. 10000.00)")
    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        pool = _pool(s, args.pool)
        if pool is None:
            return _fail(f"no pool {args.pool}")
        ref = f"funds:{uuid.uuid4().hex}"
        entry = ledger.post(s, pool.id, "funds", ref, ledger.funds_lines(args.source, amount),
                            booked_on=today, memo=f"{args.source} {args.note}".strip())
        audit(s, _actor(), "funds.add", "journal_entry", entry.id, None,
              {"pool": pool.code, "source": args.source, "amount_fen": amount, "note": args.note})
    print(f"added {format_yuan(amount)} from {args.source} to pool {args.pool} (entry {entry.id})")
    return 0


def cmd_ledger_check(args) -> int:
    from core import ledger

    x = app_context()
    with x.db.session() as s:
        bad = ledger.check(s)
    if bad:
        for line in bad:
            print(f"unbalanced: {line}")
        return 1
    print("ledger ok: every journal entry balances")
    return 0


def cmd_report_fund(args) -> int:
    from core.reports import fund_report

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        pool = _pool(s, args.pool)
        if pool is None:
            return _fail(f"no pool {args.pool}")
        doc = fund_report(s, pool, today)
        name = pool.name
    if args.json:
        print_json(doc)
        return 0
    from core.messages import render

    print(render("cli_fund_report", name=name, doc=doc))
    return 0
