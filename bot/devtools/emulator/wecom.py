"""WeCom (企业微信) group-bot webhooks: POST /cgi-bin/webhook/send?key=KEY."""
from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import time

from flask import Blueprint, current_app, jsonify, request

from bot.devtools.emulator.core import OK, Emulator, ERRMSG, sniff

bp = Blueprint("emulator_wecom", __name__)

LIMITS = {"text": 2048, "markdown": 4096}  # bytes of UTF-8 content
IMAGE_LIMIT = 2 << 20  # before base64
WINDOW = 60.0


def register(app, emu: Emulator, rate_limit: int = 20) -> None:
    """rate_limit: messages a key may post in a minute (WeCom allows 20)."""
    sent: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    app.extensions["emulator.wecom"] = {"rate_limit": rate_limit, "sent": sent}
    emu.on_reset(sent.clear)
    app.register_blueprint(bp)


def _error(code: int, detail: str = "") -> dict:
    msg = ERRMSG.get(code, "error") + (f", {detail}" if detail else "")
    return {"errcode": code,
            "errmsg": f"{msg}, hint: [{int(time.time())}_{code}], more info at "
                      f"https://open.work.weixin.qq.com/devtool/query?e={code}"}


def _check(body) -> dict | None:
    if not isinstance(body, dict):
        return _error(40058, "invalid json")
    msgtype = body.get("msgtype")
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype not in ("text", "markdown", "image", "news") or not isinstance(part, dict):
        return _error(40008)
    if msgtype in LIMITS:
        content = part.get("content")
        if not isinstance(content, str) or not content:
            return _error(40058, f"{msgtype}.content is empty")
        if len(content.encode()) > LIMITS[msgtype]:
            return _error(40058, f"{msgtype}.content exceed max length {LIMITS[msgtype]}")
    if msgtype == "image":
        try:
            data = base64.b64decode(part.get("base64") or "", validate=True)
        except (binascii.Error, ValueError):
            return _error(40009, "image.base64 is not valid base64")
        if not data or len(data) > IMAGE_LIMIT:
            return _error(40009)
        if sniff(data)[0] not in ("image/png", "image/jpeg"):
            return _error(40009, "only jpg and png")
        if hashlib.md5(data).hexdigest() != str(part.get("md5") or "").lower():
            return _error(301019)
    if msgtype == "news" and not 1 <= len(part.get("articles") or []) <= 8:
        return _error(40058, "news.articles must hold 1 to 8 articles")
    return None


@bp.post("/cgi-bin/webhook/send")
def webhook_send():
    key = request.args.get("key", "")
    if not key:
        return jsonify(_error(93000))
    state = current_app.extensions["emulator.wecom"]
    emu: Emulator = current_app.extensions["emulator"]
    problem = _check(request.get_json(force=True, silent=True))
    if problem:
        return jsonify(problem)
    with emu.lock:
        sent = state["sent"][key]
        now = time.monotonic()
        while sent and now - sent[0] >= WINDOW:
            sent.popleft()
        if len(sent) >= state["rate_limit"]:
            return jsonify(_error(45009))
        sent.append(now)
    return jsonify(OK)


@bp.post("/_emulator/wecom/rate")
def forget_rate_windows():
    """Test knob: a minute has passed for every key's rate limit."""
    emu: Emulator = current_app.extensions["emulator"]
    with emu.lock:
        current_app.extensions["emulator.wecom"]["sent"].clear()
    return jsonify({"forgotten": True})
