"""The local stand-in for everything outside: the WeChat API, WeCom group-bot webhooks, WeChat
Pay API v3 and SMS (Tencent Cloud SMS's SendSms).

Every call is recorded and listed at GET /_emulator/calls (filters: since=<id>, touser=<openid>,
path=<path>). Each area is a module here with a Blueprint and a `register(app, emulator,
**options)` function that keeps the area's state in `app.extensions["emulator.<area>"]` and
guards it with `emulator.lock`; add an area by writing such a module and one line in
`create_emulator_app`. Test knobs live under /_emulator/ (GET /_emulator/ lists every route).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.serving import make_server

from bot.devtools.emulator import pay, sms, wechat, wecom
from bot.devtools.emulator.core import Emulator, error

__all__ = ["create_emulator_app", "BackgroundServer", "Emulator"]

# reading the log is not itself logged, nor setting up the account (templates, subscriptions)
UNRECORDED = {"/_emulator/calls", "/_emulator/templates", "/_emulator/subscribe"}

control = Blueprint("emulator_control", __name__)


def emulator() -> Emulator:
    return current_app.extensions["emulator"]


def create_emulator_app(state_dir: Path | None = None, *, apps: dict[str, str] | None = None,
                        wecom_rate_limit: int = 20) -> Flask:
    """apps: {appid: secret} the token endpoints accept (None: any appid with any secret)."""
    app = Flask("huzhu_emulator")
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    emu = Emulator(state_dir)
    app.extensions["emulator"] = emu
    app.before_request(_record_and_fail)
    app.after_request(_finish_record)
    app.register_blueprint(control)
    wechat.register(app, emu, apps=apps)
    wecom.register(app, emu, rate_limit=wecom_rate_limit)
    pay.register(app, emu)
    sms.register(app, emu)
    return app


# -- recording and failure knobs, for every route --------------------------------------------

def _record_and_fail():
    if request.path in UNRECORDED:
        return None
    json_body = form = files = None
    if request.mimetype == "multipart/form-data":
        form = request.form.to_dict()
        files = {name: {"filename": f.filename, "content_type": f.mimetype,
                        "size": len(data := f.stream.read()),
                        "sha256": hashlib.sha256(data).hexdigest()}
                 for name, f in request.files.items()}
        for f in request.files.values():
            f.stream.seek(0)
    elif request.mimetype == "application/x-www-form-urlencoded" and request.form:
        form = request.form.to_dict()
    else:
        # WeChat reads the body as JSON whatever the Content-Type (wechatpy sends none)
        json_body = request.get_json(force=True, silent=True)
    touser = json_body.get("touser") if isinstance(json_body, dict) else None
    g.emulator_call = emulator().record(
        method=request.method, path=request.path, query=request.args.to_dict(),
        json_body=json_body, form=form, files=files,
        touser=touser if isinstance(touser, str) else None)
    if request.path.startswith("/_emulator/"):
        return None
    errcode = emulator().take_failure(request.path)
    if errcode is None:
        return None
    if errcode == "http500":
        return "Internal Server Error", 500
    return jsonify(error(int(errcode)))


def _finish_record(response):
    call = g.get("emulator_call")
    if call is not None:
        call["status"] = response.status_code
        if response.mimetype == "application/json":
            body = response.get_json(silent=True)
            if isinstance(body, dict):
                call["errcode"] = body.get("errcode", 0)
    return response


# -- the emulator's own routes ------------------------------------------------------------------

@control.get("/_emulator/")
def index():
    rules = sorted({f"{' '.join(sorted(r.methods - {'HEAD', 'OPTIONS'}))} {r.rule}"
                    for r in current_app.url_map.iter_rules() if r.endpoint != "static"})
    return jsonify({"routes": rules})


@control.get("/_emulator/calls")
def list_calls():
    return jsonify(emulator().calls(since=request.args.get("since", 0, type=int),
                                    touser=request.args.get("touser"),
                                    path=request.args.get("path")))


@control.delete("/_emulator/calls")
def clear_calls():
    emulator().clear_calls()
    return jsonify({"cleared": True})


@control.post("/_emulator/fail")
def arm_failure():
    """{path, errcode, count}: the next `count` calls to `path` answer `errcode` (an integer, or
    "http500" for an HTTP 500 with no JSON); count 0 disarms the path."""
    body = request.get_json(force=True, silent=True) or {}
    path, errcode, count = body.get("path"), body.get("errcode"), body.get("count", 1)
    if not isinstance(path, str) or not path.startswith("/"):
        return jsonify({"error": "path must be an absolute path such as /cgi-bin/message/custom/send"}), 400
    if errcode != "http500":
        try:
            errcode = int(errcode)
        except (TypeError, ValueError):
            return jsonify({"error": 'errcode must be an integer or "http500"'}), 400
    if not isinstance(count, int) or count < 0:
        return jsonify({"error": "count must be a whole number (0 disarms)"}), 400
    emulator().arm_failure(path, errcode, count)
    return jsonify({"armed": {"path": path, "errcode": errcode, "count": count}})


@control.delete("/_emulator/fail")
def disarm_failures():
    emulator().disarm_failures()
    return jsonify({"disarmed": True})


@control.post("/_emulator/reset")
def reset():
    emulator().reset()
    return jsonify({"reset": True})


# -- serving ------------------------------------------------------------------------------------

class BackgroundServer:
    """Serve a WSGI app on a free loopback port in a thread (tests, the demo):

        with BackgroundServer(create_emulator_app()) as server:
            requests.get(server.url + "/_emulator/calls")
    """

    def __init__(self, app: Flask | None = None, host: str = "127.0.0.1", port: int = 0):
        self.app = app or create_emulator_app()
        self._server = make_server(host, port, self.app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True,
                                        name=f"emulator:{self._server.server_port}")

    def start(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def emulator(self) -> Emulator:
        return self.app.extensions["emulator"]

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

