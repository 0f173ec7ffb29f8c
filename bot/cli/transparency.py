"""Transparency commands: village group chats, the monthly disclosure, the year report.

    huzhu groups add --village V --key KEY     a village's WeCom group-bot key (several allowed)
    huzhu groups list [--json]                 keys shown masked
    huzhu report disclosure --pool P --month YYYY-MM [--json] [--post]
    huzhu report year --pool P [--year YYYY | YYYY-MM-DD] [--json]   xlsx + PNG charts

`report` is shared with other areas (`report fund`): the parser is reused when it exists.
"""
from __future__ import annotations

import getpass
import sys
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select

from bot.cli import app_context, print_json, subcommands


def register(sub) -> None:
    g = subcommands(sub, "groups", "village group chats (WeCom group bots)")
    q = g.add_parser("add", help="store a village's WeCom group-bot key")
    q.add_argument("--village", required=True, help="镇/村 or the village's own name")
    q.add_argument("--key", required=True, help="the key of the bot's webhook URL (…?key=KEY)")
    q.set_defaults(func=cmd_groups_add)
    q = g.add_parser("list", help="the group chats of every village")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_groups_list)

    r = subcommands(sub, "report", "reports")
    q = r.add_parser("disclosure", help="a pool's monthly disclosure (公示)")
    q.add_argument("--pool", required=True)
    q.add_argument("--month", required=True, help="YYYY-MM")
    q.add_argument("--json", action="store_true")
    q.add_argument("--post", action="store_true",
                   help="also post it to the groups now (once per month unless it changed)")
    q.set_defaults(func=cmd_report_disclosure)
    q = r.add_parser("year", help="the year report: xlsx and PNG charts under DATA_DIR/exports")
    q.add_argument("--pool", required=True)
    q.add_argument("--year", help="the scheme year starting in YYYY, or the one holding a date "
                                  "YYYY-MM-DD (default: the current one)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_report_year)


def _fail(message: str) -> int:
    print(f"huzhu: {message}", file=sys.stderr)
    return 2


def _pool(s, code: str):
    from core.models import Pool

    return s.scalar(select(Pool).where(Pool.code == code))


def cmd_groups_add(args) -> int:
    from core.admins import find_village
    from core.groups import GroupError, add_group, mask_key

    x = app_context()
    try:
        with x.db.session() as s:
            village = find_village(s, args.village)
            if village is None:
                return _fail(f"no village {args.village!r} (use 镇/村 as in the scheme file)")
            row = add_group(s, village, args.key, f"cli:{getpass.getuser()}")
            print(f"group chat {row.id} added to {village.full_name}: key {mask_key(row.key)}")
    except GroupError as e:
        return _fail({"bad_key": "the key should be 8 to 128 letters, digits, - or _ "
                                 "(the part after key= in the webhook URL)",
                      "exists": "this village already has that group chat"}[e.code])
    return 0


def cmd_groups_list(args) -> int:
    from core.groups import mask_key
    from core.models import GroupChat, Village

    x = app_context()
    with x.db.session() as s:
        rows = [{"id": g.id, "village": v.full_name, "key": mask_key(g.key),
                 "created_at": g.created_at}
                for g, v in s.execute(select(GroupChat, Village)
                                      .join(Village, Village.id == GroupChat.village_id)
                                      .order_by(Village.id, GroupChat.id))]
    if args.json:
        print_json(rows)
    elif not rows:
        print("no group chats yet: huzhu groups add --village V --key KEY")
    else:
        for r in rows:
            print(f"{r['id']:>4}  {r['village']:<20} {r['key']}")
    return 0


def cmd_report_disclosure(args) -> int:
    from core import disclosure

    x = app_context()
    with x.db.session() as s:
        pool = _pool(s, args.pool)
        if pool is None:
            return _fail(f"no pool {args.pool!r}")
        try:
            data = disclosure.build(s, pool.id, args.month, x.cfg.tz)
        except disclosure.DisclosureError as e:
            return _fail(str(e))
        posted = None
        if args.post:
            posted = disclosure.publish(s, pool.id, args.month, tz=x.cfg.tz,
                                        actor=f"cli:{getpass.getuser()}")
    x.waker.wake()
    if args.json:
        doc = {k: v for k, v in data.items() if k != "digest"}
        if posted is not None:
            doc["posted"] = posted
        print_json(doc)
        return 0
    parts = disclosure.markdown_parts(data)
    for i, part in enumerate(parts, start=1):
        if len(parts) > 1:
            print(f"----- {i}/{len(parts)} ({len(part.encode())} bytes) -----")
        print(part)
    if posted is not None:
        print("\n" + (f"queued {posted['messages']} messages to {posted['groups']} group chats"
                      if posted["posted"] else "already posted for this month: nothing queued"))
    return 0


def _year(s, pool, spec: str | None, tz):
    from core import scheme_years

    if not spec:
        return scheme_years.for_report(s, pool.id, datetime.now(tz).date())
    if len(spec) == 4 and spec.isdigit():
        return scheme_years.started_in(s, pool.id, int(spec))
    return scheme_years.running(s, pool.id, date.fromisoformat(spec))


def cmd_report_year(args) -> int:
    from bot.clients.poster import year_charts
    from core.stats import year_report
    from core.yearbook import write_year_xlsx

    x = app_context()
    with x.db.session() as s:
        pool = _pool(s, args.pool)
        if pool is None:
            return _fail(f"no pool {args.pool!r}")
        try:
            year = _year(s, pool, args.year, x.cfg.tz)
        except ValueError:
            return _fail(f"--year: YYYY or YYYY-MM-DD, got {args.year!r}")
        if year is None:
            return _fail(f"pool {pool.code} has no such scheme year")
        report = year_report(s, pool.id, year)
    from core.files import private_dir, private_file

    out = private_dir(x.cfg.data_dir / "exports")
    stem = f"year-{pool.code}-{year.start.isoformat()}"
    xlsx = write_year_xlsx(report, out / f"{stem}.xlsx")
    charts = [d.path for d in year_charts(report, out, stem) if d.path is not None]
    for path in (xlsx, *charts):
        private_file(path)
    files = {"xlsx": str(xlsx), "charts": [str(p) for p in charts]}
    if args.json:
        print_json({**report, "files": files})
        return 0
    print(f"{report['pool_name']} {report['year']['start']} – {report['year']['end']}")
    print(f"  participation  {_pct(report['participation_rate'])}")
    print(f"  utilisation    {_pct(report['utilisation'])} (paid ÷ raised)")
    print(f"  benefit rate   {_pct(report['benefit_rate'])} (paid claims ÷ members)")
    avg = report["average_subsidy_fen"]
    print(f"  average        {'—' if avg is None else _yuan(avg)}")
    print(f"  burden reduced {_pct(report['burden_reduction'])} "
          f"(over {report['burden_claims']} claims with a known out-of-pocket amount)")
    print(f"wrote {xlsx}")
    for p in charts:
        print(f"wrote {p}")
    if not charts:
        print("no Chinese font (see FONT_FILE): no charts drawn")
    return 0


def _pct(value) -> str:
    return "—" if value is None else f"{Decimal(value) * 100:.2f}%"


def _yuan(fen: int) -> str:
    from core.money import format_yuan

    return format_yuan(fen)
