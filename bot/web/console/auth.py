"""Sign-in from the `/后台` link, sign-out, the stylesheet, the request's hooks."""
from __future__ import annotations

from flask import Response, g, redirect, request

from bot.web.console import bp
from bot.web.console.common import (COOKIE, COOKIE_PATH, app_ctx, close_request, db,
                                    not_found, open_request, page, teardown)
from core.config import TEMPLATES_DIR
from core.console import SESSION_HOURS, ConsoleError, end_session, end_sessions, redeem_link
from core.models import ConsoleSession

bp.before_request(open_request)
bp.after_request(close_request)
bp.teardown_request(teardown)
bp.register_error_handler(404, lambda e: not_found())


@bp.get("/login/<token>")
def login(token: str):
    try:
        started = redeem_link(db(), token)
    except ConsoleError as e:
        return page("login_refused.html", http=410 if e.code != "bad_link" else 404,
                    why=e.code)
    response = redirect("/admin/claims", 303)
    response.set_cookie(COOKIE, started.token, max_age=SESSION_HOURS * 3600, path=COOKIE_PATH,
                        httponly=True, samesite="Lax",
                        secure=app_ctx().cfg.PUBLIC_URL.lower().startswith("https://"))
    return response


@bp.post("/logout")
def logout():
    everywhere = request.form.get("everywhere") == "1"
    if everywhere:
        end_sessions(db(), g.who.openid, g.who.openid, "console")
    else:
        end_session(db(), db().get(ConsoleSession, g.who.session_id), g.who.openid)
    g.who = None
    response = page("signed_out.html", bye=True)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


@bp.get("/")
def home():
    return redirect("/admin/claims", 303)


@bp.get("/console.css")
def stylesheet():
    css = (TEMPLATES_DIR / "console" / "console.css").read_text(encoding="utf-8")
    return Response(css, mimetype="text/css")
