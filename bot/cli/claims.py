"""Claims and the DRG catalogue on the command line:

    huzhu claims list [--status S] [--pool P] [--json]
    huzhu claims remind [--date YYYY-MM-DD]     review-due reminders now (the daily job's work)
    huzhu catalog import FILE                   CHS-DRG `code name` text (DRG.dat) or CSV code,name
    huzhu icd search TEXT --file ZD_INFO.dat    ICD-10 diagnoses by code prefix or name
"""
from __future__ import annotations

import getpass
import sys
from datetime import date, datetime
from pathlib import Path

from bot.cli import app_context, print_json, subcommands
from core.models import ClaimStatus
from core.money import format_yuan


def register(sub) -> None:
    csub = subcommands(sub, "claims", "claims for subsidy")
    q = csub.add_parser("list", help="claims with their decision (masked names)")
    q.add_argument("--status", choices=[s.value for s in ClaimStatus])
    q.add_argument("--pool", help="pool code")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_claims_list)
    q = csub.add_parser("remind", help="send the review-due reminders now")
    q.add_argument("--date", help="as if today were YYYY-MM-DD")
    q.set_defaults(func=cmd_claims_remind)

    p = sub.add_parser("catalog", help="the DRG catalogue")
    gsub = p.add_subparsers(dest="catalog_command", required=True)
    q = gsub.add_parser("import", help="import DRG groups: `code name` lines or CSV code,name")
    q.add_argument("file")
    q.set_defaults(func=cmd_catalog_import)

    p = sub.add_parser("icd", help="ICD-10 diagnoses")
    isub = p.add_subparsers(dest="icd_command", required=True)
    q = isub.add_parser("search", help="diagnoses by code prefix or by name")
    q.add_argument("text")
    q.add_argument("--file", help="a `code name` file such as ZD_INFO.dat "
                                  "(default: DATA_DIR/ZD_INFO.dat)")
    q.add_argument("--limit", type=int, default=10)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_icd_search)


def cmd_claims_list(args) -> int:
    from core.review import claim_json, list_claims

    x = app_context()
    with x.db.session() as s:
        rows = [claim_json(c) for c in list_claims(s, args.status, args.pool)]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no claims")
        return 0
    for r in rows:
        decision = (format_yuan(r["amount_fen"]) if r["amount_fen"] is not None
                    else ",".join(r["reasons"]) or "-")
        print(f"{r['number']:<12} {r['household']:<10} {r['member']:<6} {r['status']:<15} "
              f"{decision:<24} due {r['due_date'] or '-'}  docs {len(r['documents'])}")
    return 0


def cmd_claims_remind(args) -> int:
    from core.review import remind_overdue

    x = app_context()
    try:
        today = date.fromisoformat(args.date) if args.date else datetime.now(x.cfg.tz).date()
    except ValueError:
        print(f"huzhu: --date: expected YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
        return 2
    with x.db.session() as s:
        sent = remind_overdue(s, today, actor=f"cli:{getpass.getuser()}")
    print(f"{sent} reminder message(s) queued")
    return 0


def cmd_catalog_import(args) -> int:
    from core.audit import audit
    from core.catalog import CatalogError, import_catalog

    x = app_context()
    try:
        with x.db.session() as s:
            added, updated = import_catalog(s, args.file)
            audit(s, f"cli:{getpass.getuser()}", "catalog.import", "drg_group", None, None,
                  {"file": Path(args.file).name, "added": added, "updated": updated})
    except CatalogError as exc:
        print(f"huzhu: catalog not imported: {exc}", file=sys.stderr)
        return 2
    print(f"{added} DRG group(s) added, {updated} renamed")
    return 0


def cmd_icd_search(args) -> int:
    from core.catalog import CatalogError, search_icd
    from core.config import load_config

    path = args.file or str(load_config().data_dir / "ZD_INFO.dat")
    try:
        found = search_icd(path, args.text, args.limit)
    except CatalogError as exc:
        print(f"huzhu: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json([{"code": c, "name": n} for c, n in found])
    else:
        for code, name in found:
            print(f"{code:<12} {name}")
        if not found:
            print("nothing found")
    return 0
