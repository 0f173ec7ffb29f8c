"""Foundation commands: serve, worker, db upgrade, emulator, chat, demo, admin invite, outbox."""
from __future__ import annotations

import signal
import sys
import threading

from sqlalchemy import select

from bot.cli import app_context, print_json, subcommands
from core.config import load_config
from core.models import AdminRole


def register(sub) -> None:
    p = sub.add_parser("serve", help="web app + worker + scheduler in one process")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="outbox delivery and the scheduler (no web)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", required=True)
    dsub.add_parser("upgrade", help="migrate to the newest schema").set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("emulator", help="local stand-in for WeChat, WeChat Pay and WeCom")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("chat", help="play the villager: send one message to the webhook")
    p.add_argument("--openid", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text")
    g.add_argument("--image", metavar="FILE")
    g.add_argument("--voice", metavar="RECOGNITION")
    g.add_argument("--subscribe", nargs="?", const="", metavar="SCENE")
    g.add_argument("--click", metavar="KEY")
    p.add_argument("--server", help="the bot's base URL (default: PUBLIC_URL)")
    p.add_argument("--emulator", help="the emulator's base URL (default: WECHAT_API_BASE)")
    p.add_argument("--wait", type=float, default=3.0, help="seconds to wait for pushed messages")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("demo", help="emulator + server on a fresh database, a scripted chat")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    p.set_defaults(func=cmd_demo)

    asub = subcommands(sub, "admin", "administrators")  # list, revoke: bot/cli/admins.py
    q = asub.add_parser("invite", help="a one-time code to bind an administrator with /绑定")
    q.add_argument("--role", required=True,
                   choices=[r.value for r in AdminRole])
    g = q.add_mutually_exclusive_group()
    g.add_argument("--village")
    g.add_argument("--pool")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_admin_invite)

    p = sub.add_parser("menu", help="the official account's custom menu")
    msub = p.add_subparsers(dest="menu_command", required=True)
    msub.add_parser("push", help="create the custom menu of SPEC through the WeChat API") \
        .set_defaults(func=cmd_menu_push)

    p = sub.add_parser("outbox", help="outgoing messages")
    osub = p.add_subparsers(dest="outbox_command", required=True)
    q = osub.add_parser("list", help="messages by status")
    q.add_argument("--status", choices=["pending", "sent", "dead"])
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_outbox_list)


def _until_signal(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_serve(args) -> int:
    from bot.server import Running, bootstrap, settle_memory

    from bot.web.webhook import check_mode

    x = app_context(migrate=False)
    check_mode(x.cfg)  # plain mode in production: refused before anything starts
    bootstrap(x)
    running = Running(x, args.host, args.port)
    settle_memory()
    running.serve_forever()
    return 0


def cmd_worker(args) -> int:
    from bot.jobs.scheduler import Scheduler
    from bot.outbox.worker import OutboxLoop

    x = app_context()
    sched = Scheduler(x)
    loop = OutboxLoop(x, scheduler=sched)
    sched.start()
    loop.start()
    stop = threading.Event()
    _until_signal(stop)
    loop.stop()
    sched.shutdown()
    return 0


def cmd_db_upgrade(args) -> int:
    from core.bootstrap import ensure_catalog

    x = app_context(migrate=False)
    x.db.upgrade()
    print("database schema is up to date")
    added = ensure_catalog(x.db)
    if added:
        print(f"DRG catalogue was empty: loaded the CHS-DRG 1.1 group list ({added} groups)")
    return 0


def cmd_emulator(args) -> int:
    from waitress import serve

    from bot.devtools.emulator import create_emulator_app

    cfg = load_config(validate=False)
    app = create_emulator_app(cfg.data_dir / "emulator")
    print(f"emulator on http://{args.host}:{args.port} — set HUZHU_WECHAT_API_BASE, "
          f"HUZHU_PAY_API_BASE and HUZHU_WECOM_WEBHOOK_BASE to this URL", flush=True)
    from bot.devtools.emulator.pay import keys_of  # WeChat Pay: the emulator's own keys (bot/clients/wechatpay.py)
    print("WeChat Pay callbacks are signed with the emulator's key; configure the bot with:\n  "
          + "\n  ".join(keys_of(app).env_lines()), flush=True)
    serve(app, host=args.host, port=args.port, threads=8)
    return 0


def cmd_chat(args) -> int:
    import requests

    from bot.devtools.chat import Villager

    cfg = load_config()
    v = Villager(args.server or cfg.PUBLIC_URL, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID,
                 cfg.WECHAT_AES_KEY, args.emulator or cfg.WECHAT_API_BASE)
    try:
        return _chat(v, args)
    except requests.ConnectionError as exc:
        url = exc.request.url.split("?")[0] if exc.request is not None else v.server
        print(f"huzhu: cannot reach {url} — is it running? (`huzhu serve`, `huzhu emulator`)",
              file=sys.stderr)
        return 1


def _chat(v, args) -> int:
    wait = args.wait
    if args.text is not None:
        r = v.text(args.openid, args.text, wait=wait)
    elif args.image:
        r = v.image(args.openid, args.image, wait=wait)
    elif args.voice is not None:
        r = v.voice(args.openid, args.voice, wait=wait)
    elif args.subscribe is not None:
        r = v.subscribe(args.openid, args.subscribe or None, wait=wait)
    else:
        r = v.click(args.openid, args.click, wait=wait)
    if r.status != 200:
        print(f"[HTTP {r.status}] {r.raw}", file=sys.stderr)
        return 1
    print(r.reply or "(success — no passive reply)")
    for text in r.pushed_texts:
        print("--- pushed ---")
        print(text)
    return 0


def cmd_demo(args) -> int:
    from bot.devtools.demo import run_demo

    return run_demo(keep=args.keep)


def cmd_admin_invite(args) -> int:
    import getpass

    from core.admins import AdminError, create_invite

    x = app_context()
    try:
        with x.db.session() as s:
            code = create_invite(s, args.role, f"cli:{getpass.getuser()}",
                                 village=args.village, pool=args.pool)
    except AdminError as e:
        print(f"huzhu: cannot invite: {e.code} {e.detail or ''}".rstrip(), file=sys.stderr)
        return 2
    if args.json:
        print_json({"code": code})
    else:
        print(f"{code}\nthe administrator sends “/绑定 {code}” to the official account "
              f"(one use, valid 7 days)")
    return 0


def cmd_menu_push(args) -> int:
    from bot.clients.wechat import WeChat
    from handlers.menu import custom_menu

    x = app_context()
    WeChat(x.cfg, x.db).create_menu(custom_menu())
    print("custom menu created")
    return 0


def cmd_outbox_list(args) -> int:
    from core.models import Household, OutboxMessage, OutboxStatus

    x = app_context()
    with x.db.session() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(args.limit)
        if args.status:
            q = q.where(OutboxMessage.status == OutboxStatus(args.status))
        found = list(s.scalars(q))
        ids = {r.household_id for r in found if r.household_id}
        numbers = dict(s.execute(select(Household.id, Household.number)
                                 .where(Household.id.in_(ids))).tuples().all()) if ids else {}
        rows = [{"id": r.id, "kind": r.kind, "status": r.status.value, "attempts": r.attempts,
                 "recipient": r.recipient, "next_attempt_at": r.next_attempt_at,
                 "last_error": r.last_error, "created_at": r.created_at,
                 "event": r.event, "channel": r.channel,
                 "household": numbers.get(r.household_id)}
                for r in found]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            what = f"{r['event']} {r['household'] or ''} via {r['channel'] or '-'} " \
                if r["event"] else ""
            print(f"{r['id']:>6} {r['status']:<8} {r['kind']:<16} tries={r['attempts']} "
                  f"{what}{r['last_error'] or ''}")
    return 0
