"""The Flask app: webhook, payment notify, health, web console. `create_app()` serves gunicorn:

    gunicorn -w 4 -k bot.web.balanced_worker.BalancedWorker --threads 16 -b 0.0.0.0:8000 \
        "bot.web.app:create_app()"

(`BalancedWorker` is gunicorn's `gthread` sharing kept-alive connections evenly between the
processes: bot/web/balanced_worker.py.)
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from sqlalchemy import func, select, text

from core.config import Config, load_config, secret_key
from core.crypto import PersonalDataVault
from core.db import Database
from core.models import OutboxMessage, OutboxStatus, WorkerHeartbeat, utcnow
from core.outbox import as_utc, counts
from core.payments import Gateway, GatewayError
from bot.outbox.waker import Waker

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("huzhu.app")

# Sent with every answer of the Flask app (pages, the payment-code page, JSON) unless a
# blueprint set its own (the claim-photo pages' stricter policy). Nothing huzhu serves is to be
# cached, framed, sniffed as another type or leak its URL (tokens, order numbers) onward.
SECURITY_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
                               "style-src 'unsafe-inline'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
}



def payment_gateway(cfg: Config) -> "Callable[[], Gateway]":
    """The payment gateway PAY_PROVIDER names, built from the configuration on first use (it
    may need the network: the emulator's keys) — a GatewayError then, not at start. Its client
    library is imported then too: most commands never pay, and start 0.2 s sooner."""
    if cfg.PAY_PROVIDER in ("wechatpay", "emulator"):  # the emulator speaks WeChat Pay v3
        def wechatpay() -> Gateway:
            from bot.clients.wechatpay import gateway_for

            return gateway_for(cfg)
        return wechatpay

    def none() -> Gateway:
        raise GatewayError(f"no payment gateway for {cfg.PAY_PROVIDER!r}")
    return none


@dataclass
class AppContext:
    """What every adapter needs: configuration, database, the personal-data vault, the
    payment gateway (`gateway()`: built on first use) and the outbox's doorbell (`waker`,
    rung after a commit that queued messages; the worker's loop waits on it)."""
    cfg: Config
    db: Database
    waker: Waker | None = None
    gateway: "Callable[[], Gateway] | None" = None

    def __post_init__(self) -> None:
        if self.waker is None:  # reaches workers of other processes (OUTBOX_BELL)
            self.waker = Waker.for_config(self.cfg)
        if self.gateway is None:
            self.gateway = payment_gateway(self.cfg)

    @cached_property
    def vault(self) -> PersonalDataVault:
        return PersonalDataVault(secret_key(self.cfg))

    @cached_property
    def deliver_context(self):
        from bot.outbox.deliver import Context

        return Context(cfg=self.cfg, db=self.db, gateway=self.gateway)


def make_context(cfg: Config | None = None, db: Database | None = None,
                 waker: Waker | None = None,
                 gateway: "Callable[[], Gateway] | None" = None) -> AppContext:
    """The app's context from the configuration: its database, a doorbell for the outbox (one
    that reaches the workers of other processes: `Waker.for_config`) and the payment gateway PAY_PROVIDER names (or the ones given)."""
    cfg = cfg or load_config()
    db = db or Database(cfg.DATABASE_URL)
    if db.secret is None:  # a migration that encrypts existing rows (phones) needs the key
        db.secret = lambda: secret_key(cfg)
    return AppContext(cfg=cfg, db=db, waker=waker, gateway=gateway)


def create_app(app_ctx: AppContext | None = None) -> Flask:
    from flask import Flask, jsonify  # here: a command needs the context, not the web app

    from bot import logs
    from bot.discover import blueprints, load_handlers
    from bot.web.webhook import (SWITCH_INTERVAL_SECONDS, Webhook, WebhookApp, describe_mode,
                                 settle_threads)

    x = app_ctx or make_context()
    if app_ctx is None:
        logs.setup(x.cfg.LOG_LEVEL)
    app = Flask("huzhu")
    app.config["MAX_CONTENT_LENGTH"] = None  # the webhook checks sizes itself (400, not 413)
    app.extensions["huzhu"] = x
    app.extensions["huzhu.webhook"] = hook = Webhook(x)  # refuses plain mode in production
    log.log(*describe_mode(x.cfg))
    app.wsgi_app = WebhookApp(app.wsgi_app, hook)  # POST /wechat without Flask's machinery
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)  # the line gets the interpreter back sooner
    settle_threads()  # a thread woken by the line does not take the processor from it
    load_handlers()
    for bp in blueprints():
        app.register_blueprint(bp)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/healthz")
    def healthz():
        body = {"status": "ok", "database": "ok"}
        try:
            with x.db.session() as s:
                s.execute(text("SELECT 1"))
                body["outbox"] = counts(s)
                oldest = s.scalar(select(func.min(OutboxMessage.created_at)).where(
                    OutboxMessage.status == OutboxStatus.pending,
                    OutboxMessage.next_attempt_at <= utcnow()))
                body["outbox"]["oldest_due_seconds"] = (
                    round((utcnow() - as_utc(oldest)).total_seconds(), 1) if oldest else 0)
                beats = list(s.scalars(select(WorkerHeartbeat)))
                alive = [b for b in beats if (utcnow() - as_utc(b.seen_at)).total_seconds() < 60]
                body["worker"] = {"alive": len(alive),
                                  "scheduler_active": any(b.scheduler_active for b in alive)}
                from core.backup import health as backup_health

                body["backup"] = backup_health(s)
        except Exception as exc:
            log.error("health check failed: %s", type(exc).__name__)
            return jsonify({"status": "error", "database": type(exc).__name__}), 503
        if body["outbox"]["dead"]:
            body["status"] = "degraded"
        if not body["worker"]["alive"]:
            body["status"] = "degraded"
        if not body["backup"]["ok"]:
            body["status"] = "degraded"
        return jsonify(body)

    if app_ctx is None:
        # the app as a WSGI server loads it by name (gunicorn's web processes): settled as
        # `huzhu serve` settles its own — on SQLite the write-ahead log copied by a thread
        # rather than by whichever commit crosses 1000 pages, and what is loaded now kept out
        # of the garbage collector's full walks, which paused every thread of the process
        from bot.server import settle_memory

        x.db.checkpoint_in_background()
        settle_memory()
    return app
