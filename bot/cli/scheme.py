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
    from core.messages import render
    from core.scheme import SchemeError, load_scheme, store_scheme

    x = app_context()
    try:
        scheme = load_scheme(args.file)
    except SchemeError as exc:
        print(render("cli_scheme_refused", stored=False, error=str(exc)), file=sys.stderr)
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
        print(render("cli_scheme_refused", stored=True, error=str(exc)), file=sys.stderr)
        return 2
    if args.json:
        print_json(doc)
    else:
        print(render("cli_scheme_saved", doc=doc))
    return 0
