"""What every console page shares: the request's database session, the signed-in
administrator (`g.who`), the CSRF check, the read-only auditor's refusal, rendering, and
`run_command`, through which every change goes (the chat command's own code path)."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from flask import Response, abort, current_app, g, request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select

from core.admins import Scope, mask_openid, scope_of
from core.audit import audit
from core.config import TEMPLATES_DIR
from core.console import current, read_only, read_scope
from core.crypto import mask_name
from core.messages import format_date
from core.models import WechatUser, utcnow
from core.money import format_yuan
from core.outbox import as_utc
from core.texts import text_of

COOKIE = "huzhu_console"
COOKIE_PATH = "/admin"

# the console's own policy: its one stylesheet and its photos from here, forms posted here
HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


@dataclass
class Who:
    openid: str
    scope: Scope  # what the administrator may see (auditor grants included)
    chat_scope: Scope  # what the chat commands let them change
    csrf: str
    session_id: int

    @property
    def read_only(self) -> bool:
        return read_only(self.scope.roles)

    @property
    def roles(self) -> set[str]:
        return {r.value for r in self.scope.roles}

    @property
    def masked(self) -> str:
        return mask_openid(self.openid)


def _local_time(value) -> str:
    if value is None:
        return ""
    x = current_app.extensions["huzhu"]
    t = as_utc(value).astimezone(x.cfg.tz)
    return f"{t:%Y-%m-%d %H:%M}"


def _audit_json(value) -> str:
    """An audit row's before/after for the page: openids masked as chat shows them, anything
    that looks like an ID or card number masked."""
    import json

    from core.crypto import scrub

    def clean(v, key=""):
        if isinstance(v, dict):
            return {k: clean(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x, key) for x in v]
        if isinstance(v, str):
            return mask_openid(v) if key in ("openid", "used_by", "target") else scrub(v)
        return v

    return json.dumps(clean(value), ensure_ascii=False)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader([str(TEMPLATES_DIR / "console"), str(TEMPLATES_DIR)]),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters["yuan"] = format_yuan
    env.filters["cndate"] = format_date
    env.filters["localtime"] = _local_time
    env.filters["maskname"] = mask_name
    env.filters["auditjson"] = _audit_json
    return env


def page(template: str, http: int = 200, **context) -> Response:
    who = getattr(g, "who", None)
    body = environment().get_template(template).render(who=who, csrf=who.csrf if who else "",
                                                        path=request.path, **context)
    return Response(body, status=http, mimetype="text/html")


def message(title: str, text: str, http: int = 200, link: str | None = None) -> Response:
    return page("message.html", http=http, title=title, text=text, link=link)


def console_text(key: str, /, **values) -> str:
    """One of the console's own texts (templates/console/texts.yaml), `values` filled in."""
    return text_of("console/texts", key, **values)


def noted(key: str, http: int, link: str | None = None) -> Response:
    """The message page of a text with a title (`key.title`) and a text (`key.text`)."""
    return message(console_text(f"{key}.title"), console_text(f"{key}.text"), http=http,
                   link=link)


def not_found() -> Response:
    return noted("not_found", 404, link="/admin/claims")


def app_ctx():
    return current_app.extensions["huzhu"]


def db():
    """The request's session (one transaction, committed after the page is made)."""
    return g.db


def now() -> datetime:
    return datetime.now(app_ctx().cfg.tz)


def today():
    return now().date()


# -- the request's life ------------------------------------------------------------------------

def open_request() -> Response | None:
    x = app_ctx()
    g.db_cm = x.db.session()
    g.db = g.db_cm.__enter__()
    g.who = None
    row = current(g.db, request.cookies.get(COOKIE))
    if row is not None:
        scope = read_scope(g.db, row.openid)
        if not scope.is_admin:  # every grant withdrawn: the session ends
            row.ended_at = utcnow()
            row = None
        else:
            g.who = Who(row.openid, scope, scope_of(g.db, row.openid), row.csrf, row.id)
    public = request.endpoint in ("console.login", "console.stylesheet")
    if g.who is None and not public:
        return page("signed_out.html", http=401)
    if request.method == "POST" and not public:
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, g.who.csrf):
            audit(g.db, g.who.openid, "admin.refused", "console", request.path[:64], None,
                  {"why": "csrf"})
            return noted("form_expired", 400)
        if g.who.read_only and request.endpoint != "console.logout":
            audit(g.db, g.who.openid, "admin.refused", "console", request.path[:64], None,
                  {"why": "read_only"})
            return noted("read_only", 403)
    return None


def close_request(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    cm = g.pop("db_cm", None)
    if cm is not None:
        g.pop("db", None)
        cm.__exit__(None, None, None)  # commit
        if getattr(g, "wake", False):
            app_ctx().waker.wake()
    return response


def teardown(exc) -> None:
    cm = g.pop("db_cm", None)
    if cm is not None:
        g.pop("db", None)
        if exc is None:
            exc = RuntimeError("request ended without its answer")
        cm.__exit__(type(exc), exc, exc.__traceback__)  # roll back


# -- changes go through the chat commands ------------------------------------------------------

def handler_ctx():
    from handlers.types import Ctx

    x = app_ctx()
    openid = g.who.openid

    def user():
        u = g.db.scalar(select(WechatUser).where(WechatUser.openid == openid))
        if u is None:
            u = WechatUser(openid=openid, subscribed=True)
            g.db.add(u)
            g.db.flush()
        return u

    return Ctx(cfg=x.cfg, vault=x.vault, openid=openid, now=now(), session=lambda: g.db,
               user=user, gateway=x.gateway)


def run_command(name: str, args: list[str]) -> str:
    """Run a chat command for the signed-in administrator (handlers/admin.py `dispatch`: the
    same role and scope checks, core functions, audit rows and household messages) and return
    its answer as text. The outbox is woken after the commit."""
    from bot.discover import load_handlers
    from handlers.admin import dispatch

    load_handlers()
    replies = dispatch(handler_ctx(), name, [a for a in args if a])
    g.wake = True
    return "\n\n".join(r.text for r in replies if r.text)


def require(condition) -> None:
    """Outside the administrator's scope: 404, as if it did not exist."""
    if not condition:
        abort(404)
