"""`huzhu admin list [--json]` and `huzhu admin revoke OPENID|CODE` (`admin invite` is in
base.py). The operator sees openids in full: they are what revoke takes."""
from __future__ import annotations

import getpass
import sys

from bot.cli import app_context, print_json, subcommands


def register(sub) -> None:
    asub = subcommands(sub, "admin", "administrators")
    q = asub.add_parser("list", help="every administrator: openid, role, scope, bound at")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_admin_list)
    q = asub.add_parser("revoke", help="withdraw an administrator (every grant of an openid), "
                                       "or an invite code (unused: it stops working; used: "
                                       "the grant it made)")
    q.add_argument("target", metavar="OPENID|CODE")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_admin_revoke)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def cmd_admin_list(args) -> int:
    from core.admins import administrators
    from core.audit import audit

    x = app_context()
    with x.db.session() as s:
        rows = administrators(s)
        audit(s, _actor(), "admin.list", "admin_grant", None, None,
              {"grants": len(rows), "via": "cli"})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no administrators; `huzhu admin invite --role super` makes the first one")
        return 0
    width = max(len(r["openid"]) for r in rows)
    for r in rows:
        print(f"{r['openid']:<{width}}  {r['role']:<13} {r['scope']:<16} {r['bound_at'][:19]}")
    return 0


def cmd_admin_revoke(args) -> int:
    from sqlalchemy import select

    from core.admins import AdminError, revoke_admin, revoke_invite
    from core.models import AdminGrant

    x = app_context()
    target = args.target.strip()
    try:
        with x.db.session() as s:
            if s.scalar(select(AdminGrant.id).where(AdminGrant.openid == target).limit(1)):
                result = {"openid": target, "revoked": revoke_admin(s, _actor(), target)}
            else:
                result = revoke_invite(s, _actor(), target)
    except AdminError:
        print(f"huzhu: no administrator and no invite code {target!r} "
              "(see `huzhu admin list`)", file=sys.stderr)
        return 2
    if args.json:
        print_json(result)
    elif "openid" in result:
        for r in result["revoked"]:
            print(f"revoked {r['openid']} {r['role']} {r['scope']}")
    elif result["used_by"] is None:
        print(f"invite code withdrawn ({result['role']}): it no longer binds anyone")
    elif result["revoked"]:
        r = result["revoked"][0]
        print(f"revoked {r['openid']} {r['role']} {r['scope']} (bound with that code)")
    else:
        print(f"the code was used by {result['used_by']}, whose grant is already gone")
    return 0
