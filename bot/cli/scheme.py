"""`huzhu scheme load FILE`: validate a scheme file (SPEC "Scheme file") and store its pool,
villages, scheme year and quotas. A wrong file is refused with the file, line and key at fault
(exit 2); nothing is stored then."""
from __future__ import annotations

import getpass
import sys

from bot.cli import app_context, print_json


def register(sub) -> None:
    p = sub.add_parser("scheme", help="scheme files: one pool's rules for one year")
    ssub = p.add_subparsers(dest="scheme_command", required=True)
    q = ssub.add_parser("load", help="validate a scheme file and store pool, villages and year")
    q.add_argument("file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_load)


def cmd_load(args) -> int:
    from core.catalog import ensure_catalog
    from core.scheme import SchemeError, load_scheme, store_scheme

    x = app_context()
    try:
        scheme = load_scheme(args.file)
    except SchemeError as exc:
        print(f"huzhu: 方案文件有错，未保存：{exc}", file=sys.stderr)
        return 2
    try:
        actor = f"cli:{getpass.getuser()}"
    except Exception:
        actor = "cli"
    try:
        with x.db.session() as s:
            ensure_catalog(s)  # a fresh database: the CHS-DRG 1.1 groups the presets use
            year = store_scheme(s, scheme, actor=actor)
            doc = {"pool": scheme.pool.code, "pool_name": scheme.pool.name,
                   "level": scheme.pool.level, "villages": list(scheme.villages),
                   "scheme_year_id": year.id,
                   "year": {"start": year.start.isoformat(), "end": year.end.isoformat()},
                   "enrolment": {"opens": year.enrolment_opens.isoformat(),
                                 "closes": year.enrolment_closes.isoformat()},
                   "per_person_fen": scheme.contribution.per_person_fen,
                   "quotas": len(scheme.benefit.quotas_fen),
                   # groups with a quota after ADRG/MDC/default rows are expanded, and those
                   # an exclusion row leaves without one
                   "quota_groups": len(scheme.benefit.quotas_fen),
                   "quota_excluded": dict(scheme.benefit.quota_excluded)}
    except SchemeError as exc:
        print(f"huzhu: 方案未保存：{exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json(doc)
    else:
        print(f"已保存：资金池 {doc['pool']}（{doc['pool_name']}，{doc['level']}），"
              f"{len(doc['villages'])} 个村；互助年度 {doc['year']['start']} 至 {doc['year']['end']}，"
              f"登记 {doc['enrolment']['opens']} 至 {doc['enrolment']['closes']}；"
              f"病种定额 {doc['quota_groups']} 个"
              + (f"，不补助 {len(doc['quota_excluded'])} 个" if doc['quota_excluded'] else "")
              + "。")
    return 0
