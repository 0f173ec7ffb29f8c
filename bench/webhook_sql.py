"""Statements per webhook message: each of bench/webhook.py's texts sent through the webhook (the
real WSGI app in this process, signed as WeChat does), counted at the driver — every statement
the ORM, Core or the inbox's own cursors send, and on PostgreSQL the BEGIN and COMMIT each
transaction costs in round trips.

    python bench/webhook_sql.py [--database-url URL] [--batch N]

Sent one at a time, each message is a batch of its own; with `--batch N`, N messages from N
users are queued at once, as under load, and the figure is per message.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from bot.devtools.chat import Villager, sign  # noqa: E402

TOKEN, APP_ID = "bench-token", "wxbench000000000"
TEXTS = ["帮助", "0", "你好", "5", "取消"]


def counted(db) -> Counter:
    """A counter of the statements sent on every connection of db's engine from now on."""
    seen: Counter = Counter()
    engine = db.engine

    if engine.dialect.name == "sqlite":
        def trace(conn):
            conn.set_trace_callback(lambda sql: seen.update([sql.split()[0].upper()]))

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            trace(dbapi_conn)
    else:
        import psycopg

        class Cursor(psycopg.Cursor):
            def execute(self, query, params=None, **kw):
                seen.update([str(query).split()[0].upper()])
                return super().execute(query, params, **kw)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.cursor_factory = Cursor
            # psycopg sends BEGIN before a transaction's first statement and COMMIT at its end,
            # a round trip each
            real_commit, real_rollback = dbapi_conn.commit, dbapi_conn.rollback

            def commit():
                if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    seen.update(["BEGIN", "COMMIT"])
                return real_commit()

            def rollback():
                if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    seen.update(["BEGIN", "ROLLBACK"])
                return real_rollback()

            dbapi_conn.commit, dbapi_conn.rollback = commit, rollback
    return seen


def post(client, v: Villager, openid: str, text: str, msg_id: int) -> str:
    ts, nonce = str(int(time.time())), f"n{msg_id}"
    q = urlencode({"timestamp": ts, "nonce": nonce, "openid": openid,
                   "signature": sign(TOKEN, ts, nonce)})
    r = client.post("/wechat?" + q, data=v.text_xml(openid, text, msg_id=msg_id).encode(),
                    content_type="text/xml")
    assert r.status_code == 200, r.status_code
    return r.get_data(as_text=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="huzhu-sql-"))
    url = args.database_url or f"sqlite:///{tmp}/huzhu.db"
    from bot.web.app import create_app, make_context
    from core.config import load_config
    from core.db import Database

    if url.startswith("postgresql"):
        from sqlalchemy import text

        d = Database(url)
        with d.engine.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        d.dispose()
    cfg = load_config({"HUZHU_DATABASE_URL": url, "HUZHU_DATA_DIR": str(tmp),
                       "HUZHU_WECHAT_TOKEN": TOKEN, "HUZHU_WECHAT_APP_ID": APP_ID,
                       "HUZHU_WECHAT_API_BASE": "http://127.0.0.1:9", "HUZHU_LOG_LEVEL": "WARNING"})
    db = Database(url)
    seen = counted(db)
    db.upgrade()
    x = make_context(cfg, db)
    app = create_app(x)
    client = app.test_client()
    v = Villager("http://x", TOKEN, APP_ID)
    # every user known (as after their first message), as in a bench round after warm-up
    n = max(args.batch, 1)
    for i in range(n):
        post(client, v, f"o_sql_{i:03d}", "帮助", 1_000_000 + i)
    msg_id = 2_000_000
    print(f"{db.engine.dialect.name}, {n} message(s) at once; statements per message:")
    for text in TEXTS:
        seen.clear()
        threads = []
        for i in range(n):
            msg_id += 1
            threads.append(threading.Thread(target=post, args=(client, v, f"o_sql_{i:03d}", text,
                                                               msg_id)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(seen.values())
        detail = ", ".join(f"{k} {c / n:g}" for k, c in sorted(seen.items()))
        print(f"  {text:<4} {total / n:5.2f}  ({detail})")
    app.extensions["huzhu.webhook"].close()
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
