"""SMS, as the project sends it: Tencent Cloud SMS's SendSms (API 3.0, version 2021-01-11), with
its TC3-HMAC-SHA256 signature checked as Tencent Cloud checks it, and the emulator's own plain
`POST /_emulator/sms`. Every message accepted is recorded and listed at `GET /_emulator/sms`.

Tencent Cloud: `POST /` with `X-TC-Action: SendSms` (the SDK's endpoint is SMS_API_BASE). The
secret ids it knows: `register(..., sms_secrets={id: key})`, by default the demo's pair
(`DEMO_SECRET_ID`, `DEMO_SECRET_KEY`); an unknown id answers AuthFailure.SecretIdNotFound, a
wrong signature AuthFailure.SignatureFailure, a request older than 5 minutes
AuthFailure.SignatureExpire. Templates: any id of digits, unless `POST /_emulator/sms/templates`
{template_id: parameter count} lists them (then an unknown id answers
FailedOperation.TemplateIncorrectOrUnapproved, a wrong count
InvalidParameterValue.TemplateParameterFormatError). Knob: `POST /_emulator/sms/fail`
{code} makes the next message fail with that code.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request

from bot.devtools.emulator.core import Emulator

bp = Blueprint("emulator_sms", __name__)

DEMO_SECRET_ID = "huzhu-demo-sms-id"
DEMO_SECRET_KEY = "huzhu-demo-sms-key"
_AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
                   r"(?P<service>[a-z]+)/tc3_request, SignedHeaders=(?P<headers>[a-z0-9;-]+), "
                   r"Signature=(?P<sig>[0-9a-f]{64})$")
_PHONE = re.compile(r"^\+861[3-9]\d{9}$")
PARAM_MAX = 35


@dataclass
class SmsState:
    secrets: dict[str, str]
    messages: list[dict] = field(default_factory=list)
    templates: dict[str, int] | None = None  # template id -> parameter count; None: any
    fail_next: list[str] = field(default_factory=list)


def register(app, emu: Emulator, sms_secrets: dict[str, str] | None = None) -> None:
    state = SmsState(secrets=dict(sms_secrets or {DEMO_SECRET_ID: DEMO_SECRET_KEY}))
    app.extensions["emulator.sms"] = state
    app.register_blueprint(bp)

    def reset():
        state.fail_next.clear()
    emu.on_reset(reset)


def _state() -> SmsState:
    return current_app.extensions["emulator.sms"]


def _lock():
    return current_app.extensions["emulator"].lock


def _tc_error(code: str, message: str):
    return jsonify({"Response": {"Error": {"Code": code, "Message": message},
                                 "RequestId": secrets.token_hex(16)}})


def _check_tc3(raw: bytes) -> tuple[str, str] | None:
    """(code, message) when the request's TC3-HMAC-SHA256 signature is not right."""
    m = _AUTH.match(request.headers.get("Authorization", ""))
    if not m:
        return "AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256"
    key = _state().secrets.get(m["id"])
    if key is None:
        return "AuthFailure.SecretIdNotFound", "the SecretId is not found"
    try:
        ts = int(request.headers.get("X-TC-Timestamp", ""))
    except ValueError:
        return "AuthFailure.InvalidAuthorization", "X-TC-Timestamp missing"
    if abs(time.time() - ts) > 300:
        return "AuthFailure.SignatureExpire", "signature expired"
    day = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")
    names = m["headers"].split(";")
    canonical_headers = "".join(f"{n}:{request.headers.get(n, '').strip().lower() if n == 'content-type' else request.headers.get(n, '').strip()}\n"
                                for n in names)
    canonical = "\n".join(["POST", "/", "", canonical_headers, m["headers"],
                           hashlib.sha256(raw).hexdigest()])
    scope = f"{day}/{m['service']}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(ts), scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])

    def h(k: bytes, msg: str) -> bytes:
        return hmac.new(k, msg.encode(), hashlib.sha256).digest()
    signing = h(h(h(("TC3" + key).encode(), day), m["service"]), "tc3_request")
    expected = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    if m["date"] != day or not hmac.compare_digest(expected, m["sig"]):
        return "AuthFailure.SignatureFailure", "the signature is not right"
    return None


def _accept(phone: str, app_id: str, sign: str, template_id: str, params: list,
            via: str) -> tuple[str, str] | dict:
    """The message recorded (a status dict), or (code, message) refusing it."""
    state = _state()
    if state.fail_next:
        code = state.fail_next.pop(0)
        return code, "failure armed by /_emulator/sms/fail"
    if not app_id:
        return "InvalidParameterValue.SdkAppIdNotExist", "SmsSdkAppId missing"
    if not sign:
        return "FailedOperation.SignatureIncorrectOrUnapproved", "SignName missing"
    if not _PHONE.match(phone or ""):
        return "InvalidParameterValue.IncorrectPhoneNumber", "not a mainland mobile number"
    if state.templates is not None:
        if template_id not in state.templates:
            return "FailedOperation.TemplateIncorrectOrUnapproved", "template not approved"
        if state.templates[template_id] != len(params):
            return ("InvalidParameterValue.TemplateParameterFormatError",
                    "wrong number of parameters")
    if not str(template_id).isdigit():
        return "FailedOperation.TemplateIncorrectOrUnapproved", "template id is digits"
    for p in params:
        if not isinstance(p, str) or "\n" in p or len(p) > PARAM_MAX:
            return ("InvalidParameterValue.TemplateParameterLengthLimit",
                    "a parameter is too long or has a line break")
    serial = f"{int(time.time())}-{secrets.token_hex(6)}"
    state.messages.append({"serial": serial, "phone": phone, "app_id": app_id, "sign": sign,
                           "template_id": template_id, "params": params, "via": via,
                           "at": datetime.now(timezone.utc).isoformat()})
    return {"SerialNo": serial, "PhoneNumber": phone, "Fee": 1, "SessionContext": "",
            "Code": "Ok", "Message": "send success", "IsoCode": "CN"}


@bp.post("/")
def tencentcloud_api():
    raw = request.get_data(cache=True)
    if request.headers.get("X-TC-Action") != "SendSms":
        return _tc_error("InvalidAction", "only SendSms is emulated")
    with _lock():
        problem = _check_tc3(raw)
    if problem:
        return _tc_error(*problem)
    body = request.get_json(force=True, silent=True) or {}
    phones = body.get("PhoneNumberSet") or []
    if not phones:
        return _tc_error("MissingParameter", "PhoneNumberSet")
    statuses = []
    with _lock():
        for phone in phones:
            result = _accept(phone, str(body.get("SmsSdkAppId") or ""),
                             str(body.get("SignName") or ""), str(body.get("TemplateId") or ""),
                             list(body.get("TemplateParamSet") or []), "tencentcloud")
            if isinstance(result, tuple):
                if result[0].startswith(("FailedOperation.Template", "InvalidParameterValue.Sdk",
                                         "FailedOperation.Signature")):
                    return _tc_error(*result)
                statuses.append({"SerialNo": "", "PhoneNumber": phone, "Fee": 0,
                                 "SessionContext": "", "Code": result[0],
                                 "Message": result[1], "IsoCode": "CN"})
            else:
                statuses.append(result)
    return jsonify({"Response": {"SendStatusSet": statuses,
                                 "RequestId": secrets.token_hex(16)}})


@bp.post("/_emulator/sms")
def plain_send():
    body = request.get_json(force=True, silent=True) or {}
    with _lock():
        result = _accept(str(body.get("phone") or ""), str(body.get("app_id") or ""),
                         str(body.get("sign") or ""), str(body.get("template_id") or ""),
                         list(body.get("params") or []), "emulator")
    if isinstance(result, tuple):
        return jsonify({"code": result[0], "message": result[1]})
    return jsonify({"code": "Ok", "serial": result["SerialNo"]})


@bp.get("/_emulator/sms")
def list_messages():
    with _lock():
        return jsonify(list(_state().messages))


@bp.post("/_emulator/sms/templates")
def set_templates():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": "send {template_id: parameter count}"}), 400
    with _lock():
        _state().templates = {str(k): int(v) for k, v in body.items()} or None
    return jsonify({"templates": _state().templates})


@bp.post("/_emulator/sms/fail")
def arm_failure():
    code = (request.get_json(force=True, silent=True) or {}).get("code")
    if not isinstance(code, str) or not code:
        return jsonify({"error": "send {code}, e.g. FailedOperation.InsufficientBalanceInSmsPackage"}), 400
    with _lock():
        _state().fail_next.append(code)
    return jsonify({"armed": code})
