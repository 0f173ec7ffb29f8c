"""The WeChat official-account API, as the project calls it: tokens, customer-service, template
and subscription messages, media, QR codes, menus, tags and mass sends; and web authorization
(网页授权): `/connect/oauth2/authorize` as the phone's WeChat answers it (served here for
WECHAT_OPEN_BASE) and the `sns/oauth2/access_token` exchange of its code.

Which WeChat user is "in the phone" is a cookie of the browser: `GET
/_emulator/oauth/phone?openid=…[&next=URL]` sets it (and goes on to `next`); without it the
authorize page answers as WeChat does outside its app (请在微信客户端打开链接)."""
from __future__ import annotations

import functools
import io
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import qrcode
from flask import Blueprint, Response, current_app, g, jsonify, redirect, request

from bot.devtools.emulator.core import OK, Emulator, error, sniff
from core.notices import field_problem

bp = Blueprint("emulator_wechat", __name__)

TOKEN_TTL = 7200
OVERLAP = 300  # old and new tokens are both valid for 5 minutes around a refresh
MEDIA_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "thumb": 64 << 10}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/bmp"}
CUSTOM_TYPES = {"text", "image", "voice", "video", "music", "news", "mpnews", "mpnewsarticle",
                "msgmenu", "wxcard", "miniprogrampage"}
BUTTON_TYPES = {"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id",
                "article_view_limited", "view_limited", "miniprogram"}
QR_TEMPORARY = {"QR_SCENE", "QR_STR_SCENE"}
QR_PERMANENT = {"QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"}
OAUTH_CODE_TTL = 300  # a code works once, within five minutes
PHONE_COOKIE = "emulator_wechat_openid"


@dataclass
class Token:
    appid: str
    expires_at: float


@dataclass
class WeChatState:
    apps: dict[str, str] | None
    tokens: dict[str, Token] = field(default_factory=dict)
    stable: dict[str, str] = field(default_factory=dict)  # appid -> its current stable token
    qrcodes: dict[str, dict] = field(default_factory=dict)  # ticket -> {url, scene, …}
    menus: dict[str, dict] = field(default_factory=dict)  # appid -> menu
    tags: dict[str, dict[int, dict]] = field(default_factory=dict)  # appid -> id -> tag
    oauth_codes: dict[str, dict] = field(default_factory=dict)  # code -> {appid, openid, …}
    templates: dict[str, list[str]] = field(default_factory=dict)  # template_id -> fields
    subscriptions: dict[tuple, int] = field(default_factory=dict)  # (openid, template) -> n
    jsapi_ticket: str = field(default_factory=lambda: secrets.token_urlsafe(64))
    next_id: int = 1000

    def issue(self, appid: str) -> tuple[str, int]:
        value = f"{self.next_id}_{secrets.token_urlsafe(96)}"
        self.next_id += 1
        self.tokens[value] = Token(appid, time.time() + TOKEN_TTL)
        return value, TOKEN_TTL


def register(app, emu: Emulator, apps: dict[str, str] | None = None) -> None:
    app.extensions["emulator.wechat"] = WeChatState(apps=apps, templates=example_templates())
    app.register_blueprint(bp)


def example_templates() -> dict[str, list[str]]:
    """The templates of config/notify-templates.example.yaml: the demo account has added them."""
    from core.config import ROOT
    from core.notices import load_templates

    found = load_templates(ROOT / "config" / "notify-templates.example.yaml")
    return {t.template_id: list(t.fields) for t in found.values()}


def _emu() -> Emulator:
    return current_app.extensions["emulator"]


def _state() -> WeChatState:
    return current_app.extensions["emulator.wechat"]


def _body():
    """The JSON body, or an error response as WeChat gives for an empty or broken one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None, jsonify(error(44002))
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return None, jsonify(error(47001))
    return body, None


def needs_token(view):
    """Check ?access_token= as WeChat does: 41001 missing, 40001 unknown, 42001 expired."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        value = request.args.get("access_token")
        if not value:
            return jsonify(error(41001))
        with _emu().lock:
            token = _state().tokens.get(value)
        if token is None:
            return jsonify(error(40001))
        if token.expires_at <= time.time():
            return jsonify(error(42001))
        g.appid = token.appid
        return view(*args, **kwargs)
    return wrapper


# -- access tokens ------------------------------------------------------------------------------

def _check_app(grant_type, appid, secret):
    if grant_type != "client_credential":
        return error(40002)
    if not appid:
        return error(41002)
    if not secret:
        return error(41004)
    apps = _state().apps
    if apps is not None:
        if appid not in apps:
            return error(40013)
        if apps[appid] != secret:
            return error(40125)
    return None


@bp.get("/cgi-bin/token")
def token():
    a = request.args
    problem = _check_app(a.get("grant_type"), a.get("appid"), a.get("secret"))
    if problem:
        return jsonify(problem)
    state = _state()
    with _emu().lock:
        now = time.time()
        for t in state.tokens.values():  # the previous one stays valid for 5 more minutes
            if t.appid == a["appid"] and t.expires_at > now + OVERLAP:
                t.expires_at = now + OVERLAP
        value, ttl = state.issue(a["appid"])
    return jsonify({"access_token": value, "expires_in": ttl})


@bp.post("/cgi-bin/stable_token")
def stable_token():
    """Normal mode returns the current token while more than 5 minutes are left (then a new one,
    the old staying valid to its end); force_refresh revokes the current one at once."""
    body, problem = _body()
    if problem:
        return problem
    problem = _check_app(body.get("grant_type"), body.get("appid"), body.get("secret"))
    if problem:
        return jsonify(problem)
    appid, state = body["appid"], _state()
    with _emu().lock:
        now = time.time()
        current = state.stable.get(appid)
        entry = state.tokens.get(current) if current else None
        if body.get("force_refresh"):
            state.tokens.pop(current, None)
            entry = None
        if entry is not None and entry.expires_at - now > OVERLAP:
            return jsonify({"access_token": current, "expires_in": int(entry.expires_at - now)})
        value, ttl = state.issue(appid)
        state.stable[appid] = value
    return jsonify({"access_token": value, "expires_in": ttl})


@bp.post("/_emulator/tokens/expire")
def expire_tokens():
    """Test knob: every issued token has expired (calls answer 42001)."""
    with _emu().lock:
        for t in _state().tokens.values():
            t.expires_at = time.time() - 1
    return jsonify({"expired": True})


@bp.post("/_emulator/tokens/revoke")
def revoke_tokens():
    """Test knob: every issued token is unknown (calls answer 40001), as after a refresh
    elsewhere."""
    with _emu().lock:
        _state().tokens.clear()
        _state().stable.clear()
    return jsonify({"revoked": True})


# -- messages -------------------------------------------------------------------------------------

@bp.post("/cgi-bin/message/custom/send")
@needs_token
def custom_send():
    body, problem = _body()
    if problem:
        return problem
    if not body.get("touser") or not isinstance(body["touser"], str):
        return jsonify(error(40003))
    msgtype = body.get("msgtype")
    if msgtype not in CUSTOM_TYPES or not isinstance(body.get(msgtype), dict):
        return jsonify(error(40008))
    part = body[msgtype]
    if msgtype == "text" and not str(part.get("content") or "").strip():
        return jsonify(error(44004))
    if msgtype in ("image", "voice") and _emu().media.get(part.get("media_id")) is None:
        return jsonify(error(40007))
    if msgtype == "news":
        articles = part.get("articles") or []
        if not articles:
            return jsonify(error(44003))
        if len(articles) > 1:  # customer-service news carries one article
            return jsonify(error(45008))
    return jsonify(OK)


def _check_templated(body):
    """WeChat's rules for a template or subscription message: a known template id (40037), and
    every field of a known kind (thing, phrase, amount, …: core.notices.field_problem) within
    its kind's rules — no line break, not over its length (47003)."""
    if not body.get("touser") or not isinstance(body["touser"], str):
        return error(40003)
    template_id = body.get("template_id")
    if not template_id or not isinstance(template_id, str):
        return error(40037)
    with _emu().lock:
        fields = _state().templates.get(template_id)
    if fields is None:
        return error(40037)
    data = body.get("data")
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v
                                             for v in data.values()):
        return error(47001)
    for name, value in data.items():
        if fields and name not in fields:
            continue  # WeChat ignores a field the template does not have
        why = field_problem(name, value["value"])
        if why:
            return error(47003, f"data.{name}.value {why}")
    return None


@bp.post("/cgi-bin/message/template/send")
@needs_token
def template_send():
    body, problem = _body()
    if problem:
        return problem
    problem = _check_templated(body)
    if problem:
        return jsonify(problem)
    with _emu().lock:
        msgid = _state().next_id
        _state().next_id += 1
    return jsonify({**OK, "msgid": msgid})


@bp.post("/cgi-bin/message/subscribe/bizsend")
@needs_token
def subscribe_send():
    """A subscription notice: the user must have accepted the template (the subscribe button,
    `POST /_emulator/subscribe`); each acceptance carries one notice (43101 otherwise)."""
    body, problem = _body()
    if problem:
        return problem
    problem = _check_templated(body)
    if problem:
        return jsonify(problem)
    key = (body["touser"], body["template_id"])
    with _emu().lock:
        left = _state().subscriptions.get(key, 0)
        if left <= 0:
            return jsonify(error(43101))
        _state().subscriptions[key] = left - 1
    return jsonify(OK)


@bp.post("/_emulator/templates")
def add_templates():
    """Test knob: templates the account has added, {template_id: [field names]} (an empty list:
    any fields). The example NOTIFY_TEMPLATES file's templates are there from the start."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
        return jsonify({"error": "send {template_id: [field names]}"}), 400
    with _emu().lock:
        _state().templates.update({k: list(v) for k, v in body.items()})
    return jsonify({"templates": sorted(body)})


@bp.get("/_emulator/templates")
def list_templates():
    with _emu().lock:
        return jsonify(_state().templates)


@bp.post("/_emulator/subscribe")
def accept_subscription():
    """What a tap on the page's subscribe button does: {openid, template_ids: [...]} — each
    accepted template may then carry one subscription notice to that user."""
    body = request.get_json(force=True, silent=True) or {}
    openid, ids = body.get("openid"), body.get("template_ids")
    if not isinstance(openid, str) or not isinstance(ids, list):
        return jsonify({"error": "send {openid, template_ids: [...]}"}), 400
    with _emu().lock:
        for tid in ids:
            key = (openid, str(tid))
            _state().subscriptions[key] = _state().subscriptions.get(key, 0) + 1
    return jsonify({"accepted": ids})


@bp.get("/cgi-bin/ticket/getticket")
@needs_token
def getticket():
    """The JS-SDK ticket (type=jsapi) a page signs wx.config with."""
    if request.args.get("type") not in ("jsapi", "wx_card"):
        return jsonify(error(40058))
    with _emu().lock:
        ticket = _state().jsapi_ticket
    return jsonify({**OK, "ticket": ticket, "expires_in": 7200})


# -- media ----------------------------------------------------------------------------------------

@bp.post("/cgi-bin/media/upload")
@needs_token
def media_upload():
    kind = request.args.get("type")
    if kind not in MEDIA_LIMITS:
        return jsonify(error(40004))
    upload = request.files.get("media")
    data = upload.read() if upload else b""
    if not data:
        return jsonify(error(41005))
    if len(data) > MEDIA_LIMITS[kind]:
        return jsonify(error(40009 if kind in ("image", "thumb") else 40004))
    ctype, ext = sniff(data, upload.mimetype)
    if kind in ("image", "thumb") and ctype not in IMAGE_TYPES:
        return jsonify(error(40005))
    with _emu().lock:
        media_id = _emu().media.put(data, ctype, upload.filename or f"media.{ext}", kind)
    return jsonify({"type": kind, "media_id": media_id, "created_at": int(time.time())})


def _media_response(media_id):
    with _emu().lock:
        item = _emu().media.get(media_id)
    if item is None:
        return None
    _, ext = sniff(item["data"], item["content_type"])
    return Response(item["data"], mimetype=item["content_type"], headers={
        "Content-Disposition": f'attachment; filename="{media_id[:16]}.{ext}"'})


@bp.get("/cgi-bin/media/get")
@needs_token
def media_get():
    return _media_response(request.args.get("media_id")) or jsonify(error(40007))


@bp.post("/_emulator/media")
def user_media():
    """A file as if a user had sent it: {media_id, pic_url}. The media_id also works with
    /cgi-bin/media/get, as a user's image does on the real API."""
    upload = request.files.get("media")
    data = upload.read() if upload else b""
    if not data:
        return jsonify({"error": "send the file as multipart field 'media'"}), 400
    ctype, ext = sniff(data, upload.mimetype)
    kind = "image" if ctype.startswith("image/") else "voice" if ctype.startswith("audio/") else "file"
    with _emu().lock:
        media_id = _emu().media.put(data, ctype, upload.filename or f"media.{ext}", kind)
    return jsonify({"media_id": media_id,
                    "pic_url": f"{request.host_url.rstrip('/')}/_emulator/media/{media_id}"})


@bp.get("/_emulator/media/<media_id>")
def user_media_get(media_id):
    return _media_response(media_id) or (jsonify({"error": "unknown media_id"}), 404)


# -- QR codes -------------------------------------------------------------------------------------

@bp.post("/cgi-bin/qrcode/create")
@needs_token
def qrcode_create():
    body, problem = _body()
    if problem:
        return problem
    action = body.get("action_name")
    if action not in QR_TEMPORARY | QR_PERMANENT:
        return jsonify(error(40052))
    scene = (body.get("action_info") or {}).get("scene") or {}
    if action.endswith("STR_SCENE"):
        value = scene.get("scene_str")
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            return jsonify(error(40053))
    else:
        value = scene.get("scene_id")
        top = 100000 if action in QR_PERMANENT else 2 ** 32 - 1
        if not isinstance(value, int) or not 1 <= value <= top:
            return jsonify(error(40053))
    ticket = secrets.token_urlsafe(48)
    result = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(16)}"}
    if action in QR_TEMPORARY:
        result["expire_seconds"] = min(int(body.get("expire_seconds") or 60), 2592000)
    with _emu().lock:
        _state().qrcodes[ticket] = {"ticket": ticket, "url": result["url"], "scene": value,
                                    "action_name": action, "appid": g.appid}
    return jsonify(result)


@bp.get("/cgi-bin/showqrcode")
def show_qrcode():
    """The QR image (no token, as on mp.weixin.qq.com)."""
    with _emu().lock:
        qr = _state().qrcodes.get(request.args.get("ticket", ""))
    if qr is None:
        return Response("ticket not found", status=404, mimetype="text/plain")
    buf = io.BytesIO()
    qrcode.make(qr["url"]).save(buf, format="PNG")
    return Response(buf.getvalue(), mimetype="image/png")


@bp.get("/_emulator/qrcodes")
def list_qrcodes():
    """Test knob: the QR codes created, with their scenes (what a scan would carry)."""
    with _emu().lock:
        return jsonify(list(_state().qrcodes.values()))


# -- menus ----------------------------------------------------------------------------------------

def _check_button(button: dict, top: bool):
    name = button.get("name")
    if not name or len(name.encode()) > (16 if top else 60):
        return 40018
    if top and "sub_button" in button:
        subs = button["sub_button"]
        if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
            return 40023
        for sub in subs:
            if problem := _check_button(sub, top=False):
                return problem
        return None
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        return 40017
    if kind == "click" and not 1 <= len(str(button.get("key") or "").encode()) <= 128:
        return 40019
    if kind == "view" and not str(button.get("url") or "").startswith(("http://", "https://")):
        return 40055
    return None


@bp.post("/cgi-bin/menu/create")
@needs_token
def menu_create():
    body, problem = _body()
    if problem:
        return problem
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return jsonify(error(40016))
    for button in buttons:
        if code := _check_button(button, top=True):
            return jsonify(error(code))
    with _emu().lock:
        _state().menus[g.appid] = {"button": buttons}
    return jsonify(OK)


@bp.get("/cgi-bin/menu/get")
@needs_token
def menu_get():
    with _emu().lock:
        menu = _state().menus.get(g.appid)
    return jsonify({"menu": menu} if menu else error(46003))


# -- tags and mass sends ----------------------------------------------------------------------

def _tags() -> dict[int, dict]:
    return _state().tags.setdefault(g.appid, {2: {"id": 2, "name": "星标组", "members": set()}})


@bp.post("/cgi-bin/tags/create")
@needs_token
def tags_create():
    body, problem = _body()
    if problem:
        return problem
    name = str((body.get("tag") or {}).get("name") or "")
    with _emu().lock:
        tags = _tags()
        if not name.strip() or any(t["name"] == name for t in tags.values()):
            return jsonify(error(45157))
        if len(name.encode()) > 30:
            return jsonify(error(45158))
        if len(tags) >= 100:
            return jsonify(error(45056))
        tag_id = max([99, *tags]) + 1
        tags[tag_id] = {"id": tag_id, "name": name, "members": set()}
    return jsonify({"tag": {"id": tag_id, "name": name}})


@bp.get("/cgi-bin/tags/get")
@needs_token
def tags_get():
    with _emu().lock:
        tags = [{"id": t["id"], "name": t["name"], "count": len(t["members"])}
                for t in _tags().values()]
    return jsonify({"tags": tags})


def _batch(body, tagging: bool):
    openids = body.get("openid_list")
    if not isinstance(openids, list) or not 1 <= len(openids) <= 50:
        return error(40032)
    with _emu().lock:
        tag = _tags().get(body.get("tagid"))
        if tag is None:
            return error(45159)
        if tagging:
            tag["members"].update(openids)
        else:
            tag["members"].difference_update(openids)
    return OK


@bp.post("/cgi-bin/tags/members/batchtagging")
@needs_token
def tags_batchtagging():
    body, problem = _body()
    return problem or jsonify(_batch(body, tagging=True))


@bp.post("/cgi-bin/tags/members/batchuntagging")
@needs_token
def tags_batchuntagging():
    body, problem = _body()
    return problem or jsonify(_batch(body, tagging=False))


@bp.post("/cgi-bin/message/mass/sendall")
@needs_token
def mass_sendall():
    body, problem = _body()
    if problem:
        return problem
    filt = body.get("filter") or {}
    msgtype = body.get("msgtype")
    if msgtype not in ("text", "image", "mpnews", "voice", "mpvideo", "wxcard") or \
            not isinstance(body.get(msgtype), dict):
        return jsonify(error(40008))
    if msgtype == "text" and not str(body["text"].get("content") or "").strip():
        return jsonify(error(44004))
    if msgtype == "image" and _emu().media.get(body["image"].get("media_id")) is None:
        return jsonify(error(40007))
    with _emu().lock:
        tags = _tags()
        if filt.get("is_to_all"):
            recipients = set().union(*(t["members"] for t in tags.values()))
        elif filt.get("tag_id") in tags:
            recipients = set(tags[filt["tag_id"]]["members"])
        else:
            return jsonify(error(45159))
        msg_id = _state().next_id
        _state().next_id += 1
    g.emulator_call["recipients"] = sorted(recipients)
    return jsonify({"errcode": 0, "errmsg": "send job submission success",
                    "msg_id": msg_id, "msg_data_id": msg_id})


# -- web authorization (网页授权) -----------------------------------------------------------------

@bp.get("/_emulator/oauth/phone")
def oauth_phone():
    """Whose WeChat this browser is: the cookie the authorize page reads; then on to `next`."""
    openid = request.args.get("openid", "")
    target = request.args.get("next")
    resp = redirect(target, 302) if target else jsonify({"openid": openid})
    if openid:
        resp.set_cookie(PHONE_COOKIE, openid, httponly=True, samesite="Lax")
    else:
        resp.delete_cookie(PHONE_COOKIE)
    return resp


def _oauth_page(text: str, status: int = 200) -> Response:
    return Response(f"<!doctype html><meta charset=utf-8><title>微信</title><p>{text}</p>",
                    status=status, mimetype="text/html")


@bp.get("/connect/oauth2/authorize")
def oauth_authorize():
    """The user is asked nothing for snsapi_base: WeChat sends the browser back at once to
    redirect_uri with ?code=…&state=…"""
    a = request.args
    apps = _state().apps
    if not a.get("appid") or (apps is not None and a["appid"] not in apps):
        return _oauth_page("参数错误：appid 无效")
    redirect_uri = a.get("redirect_uri", "")
    if not redirect_uri.startswith(("http://", "https://")):
        return _oauth_page("redirect_uri 参数错误")
    if a.get("response_type") != "code" or a.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
        return _oauth_page("scope 参数错误或没有 scope 权限")
    openid = request.cookies.get(PHONE_COOKIE)
    if not openid:
        return _oauth_page("请在微信客户端打开链接")
    code = secrets.token_urlsafe(24)
    with _emu().lock:
        _state().oauth_codes[code] = {"appid": a["appid"], "openid": openid, "scope": a["scope"],
                                      "expires_at": time.time() + OAUTH_CODE_TTL, "used": False}
    sep = "&" if "?" in redirect_uri else "?"
    query = urlencode({"code": code, "state": a.get("state", "")})
    return redirect(f"{redirect_uri}{sep}{query}", 302)


@bp.get("/sns/oauth2/access_token")
def oauth_access_token():
    a = request.args
    if a.get("grant_type") != "authorization_code":
        return jsonify(error(40002))
    apps = _state().apps
    if not a.get("appid"):
        return jsonify(error(41002))
    if not a.get("secret"):
        return jsonify(error(41004))
    if apps is not None and a["appid"] not in apps:
        return jsonify(error(40013))
    if apps is not None and apps[a["appid"]] != a["secret"]:
        return jsonify(error(40125))
    with _emu().lock:
        found = _state().oauth_codes.get(a.get("code") or "")
        if found is None or found["appid"] != a["appid"] or found["expires_at"] <= time.time():
            return jsonify(error(40029))
        if found["used"]:
            return jsonify(error(40163))
        found["used"] = True
    return jsonify({"access_token": secrets.token_urlsafe(32), "expires_in": 7200,
                    "refresh_token": secrets.token_urlsafe(32), "openid": found["openid"],
                    "scope": found["scope"]})
