"""WeChat Pay API v3 as the project calls it: Native orders, order queries and closing, and the
payment callback — signed with the emulator's own platform key pair and encrypted with its APIv3
key exactly as WeChat Pay does, so the bot verifies and decrypts it with the same code as the
real one.

- `POST /v3/pay/transactions/native` → `{code_url}`; `GET /v3/pay/transactions/out-trade-no/{no}`;
  `POST /v3/pay/transactions/out-trade-no/{no}/close` → 204. Requests must carry a valid
  `Authorization: WECHATPAY2-SHA256-RSA2048 …` signature by a merchant key the emulator knows
  (`POST /_emulator/pay/merchants {mchid, serial_no, public_key}`, as a merchant uploads its API
  certificate); answers are signed (Wechatpay-Signature, -Timestamp, -Nonce, -Serial).
- `POST /_emulator/pay/<out_trade_no>` pays an order and posts the callback to the order's
  notify_url; the answer holds the bot's answer and the callback as sent (headers and body), so
  a test can replay it. Its optional JSON body changes what the payer's bank "reports":
  `openid` (the payer), `total` (fen: a mismatching amount), `appid`, `mchid`,
  `transaction_id`, and `deliver: false` to build the callback without posting it. Paying an
  order again re-sends the same notification (WeChat's retry).
- `GET /_emulator/pay/config` — the configuration the bot needs (mchid, APIv3 key, platform
  public key and its id), also printed by `huzhu emulator`. The keys are generated at the first
  start and kept under the state directory.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Blueprint, Response, current_app, jsonify, request

from bot.devtools.emulator.core import Emulator

bp = Blueprint("emulator_pay", __name__)

CST = timezone(timedelta(hours=8))
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AUTH_SKEW = 300
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_AUTH_PART = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class PayKeys:
    private_key: rsa.RSAPrivateKey
    public_pem: str
    public_key_id: str
    apiv3_key: str
    mchid: str
    public_key_file: str | None = None

    def config(self) -> dict:
        return {"mchid": self.mchid, "apiv3_key": self.apiv3_key,
                "public_key_id": self.public_key_id, "public_key": self.public_pem,
                "public_key_file": self.public_key_file}

    def env_lines(self) -> list[str]:
        """The bot's configuration for this emulator, as environment variables."""
        lines = ["HUZHU_PAY_PROVIDER=emulator", f"HUZHU_PAY_MCH_ID={self.mchid}",
                 f"HUZHU_PAY_APIV3_KEY={self.apiv3_key}",
                 f"HUZHU_PAY_PUBLIC_KEY_ID={self.public_key_id}"]
        if self.public_key_file:
            lines.append(f"HUZHU_PAY_PUBLIC_KEY_FILE={self.public_key_file}")
        return lines


def _generate_keys() -> tuple[rsa.RSAPrivateKey, dict]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alphabet = string.ascii_letters + string.digits
    meta = {"public_key_id": "PUB_KEY_ID_" + secrets.token_hex(16).upper(),
            "apiv3_key": "".join(secrets.choice(alphabet) for _ in range(32)),
            "mchid": "19" + "".join(secrets.choice(string.digits) for _ in range(8))}
    return key, meta


def load_keys(state_dir: Path | None) -> PayKeys:
    """The emulator's platform key pair, APIv3 key and mchid: made once, kept in state_dir/pay."""
    directory = Path(state_dir) / "pay" if state_dir else None
    key = meta = None
    if directory and (directory / "platform_key.pem").exists():
        key = serialization.load_pem_private_key((directory / "platform_key.pem").read_bytes(),
                                                 password=None)
        meta = json.loads((directory / "settings.json").read_text())
    if key is None:
        key, meta = _generate_keys()
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "platform_key.pem"
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
            (directory / "settings.json").write_text(json.dumps(meta))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    public_file = None
    if directory:
        public_file = directory / "wechatpay_public_key.pem"
        public_file.write_text(public_pem)
    return PayKeys(key, public_pem, meta["public_key_id"], meta["apiv3_key"], meta["mchid"],
                   str(public_file.resolve()) if public_file else None)


@dataclass
class PayState:
    keys: PayKeys
    lock: threading.RLock
    orders: dict[str, dict] = field(default_factory=dict)  # out_trade_no -> order
    merchants: dict[str, dict] = field(default_factory=dict)  # serial_no -> {mchid, key}


def register(app, emu: Emulator) -> None:
    app.extensions["emulator.pay"] = PayState(load_keys(emu.state_dir), emu.lock)
    app.register_blueprint(bp)


def keys_of(app) -> PayKeys:
    return app.extensions["emulator.pay"].keys


def _state() -> PayState:
    return current_app.extensions["emulator.pay"]


# -- signing ----------------------------------------------------------------------------------

def _sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(),
                                     hashes.SHA256())).decode()


def signed_headers(keys: PayKeys, body: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
            "Wechatpay-Serial": keys.public_key_id,
            "Wechatpay-Signature": _sign(keys.private_key, f"{timestamp}\n{nonce}\n{body}\n"),
            "Wechatpay-Signature-Type": SIGNATURE_TYPE}


def _answer(payload: dict | None, status: int = 200) -> Response:
    """A signed answer as WeChat Pay gives it (UTF-8 JSON, or an empty 204)."""
    body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
    headers = signed_headers(_state().keys, body)
    headers["Request-ID"] = str(uuid.uuid4())
    return Response(body, status=status, headers=headers,
                    content_type="application/json; charset=utf-8")


def _fail(status: int, code: str, message: str) -> Response:
    return _answer({"code": code, "message": message}, status)


def _authorized() -> tuple[dict | None, Response | None]:
    """Check the merchant's Authorization signature: (merchant, None) or (None, a 401)."""
    auth = request.headers.get("Authorization", "")
    scheme, _, rest = auth.partition(" ")
    if scheme != SIGNATURE_TYPE:
        return None, _fail(401, "SIGN_ERROR", "Authorization 缺失或认证类型不是 WECHATPAY2-SHA256-RSA2048")
    parts = dict(_AUTH_PART.findall(rest))
    state = _state()
    with state.lock:
        merchant = state.merchants.get(parts.get("serial_no", ""))
    if merchant is None:
        return None, _fail(401, "SIGN_ERROR", "商户证书序列号有误，请确认后重试")
    if merchant["mchid"] != parts.get("mchid"):
        return None, _fail(401, "SIGN_ERROR", "商户号与证书不匹配")
    try:
        if abs(time.time() - int(parts.get("timestamp", ""))) > AUTH_SKEW:
            return None, _fail(401, "SIGN_ERROR", "timestamp 已过期")
    except ValueError:
        return None, _fail(401, "SIGN_ERROR", "timestamp 格式错误")
    target = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
    message = (f"{request.method}\n{target}\n{parts['timestamp']}\n{parts.get('nonce_str', '')}\n"
               f"{request.get_data(as_text=True)}\n")
    try:
        merchant["key"].verify(base64.b64decode(parts.get("signature", "")), message.encode(),
                               padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return None, _fail(401, "SIGN_ERROR", "签名错误，请检查后再试")
    return merchant, None


# -- the emulator's own routes --------------------------------------------------------------

@bp.get("/_emulator/pay/config")
def config():
    keys = _state().keys
    return jsonify({**keys.config(), "env": keys.env_lines()})


@bp.post("/_emulator/pay/merchants")
def add_merchant():
    body = request.get_json(force=True, silent=True) or {}
    try:
        key = serialization.load_pem_public_key(str(body.get("public_key", "")).encode())
    except ValueError:
        return jsonify({"error": "public_key must be a PEM public key"}), 400
    if not body.get("mchid") or not body.get("serial_no"):
        return jsonify({"error": "mchid and serial_no are required"}), 400
    state = _state()
    with state.lock:
        state.merchants[str(body["serial_no"])] = {"mchid": str(body["mchid"]), "key": key}
    return jsonify({"registered": {"mchid": body["mchid"], "serial_no": body["serial_no"]}})


@bp.get("/_emulator/pay/orders")
def list_orders():
    with _state().lock:
        return jsonify([_public(o) for o in _state().orders.values()])


def _public(order: dict) -> dict:
    return {k: v for k, v in order.items() if not k.startswith("_")}


# -- WeChat Pay API v3 --------------------------------------------------------------------------

def _trade_state(order: dict) -> str:
    if order["trade_state"] == "NOTPAY" and order.get("_expires") and order["_expires"] < time.time():
        order["trade_state"] = "CLOSED"
    return order["trade_state"]


@bp.post("/v3/pay/transactions/native")
def native():
    merchant, problem = _authorized()
    if problem:
        return problem
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return _fail(400, "PARAM_ERROR", "请求体不是合法的 JSON")
    amount = body.get("amount") or {}
    description = body.get("description")
    out_trade_no = body.get("out_trade_no")
    notify_url = body.get("notify_url")
    if body.get("mchid") != merchant["mchid"]:
        return _fail(400, "PARAM_ERROR", "mchid 与请求的商户号不一致")
    if not isinstance(body.get("appid"), str) or not body["appid"]:
        return _fail(400, "PARAM_ERROR", "输入源“/body/appid”映射到值字段“公众号ID”字符串规则校验失败")
    if not isinstance(description, str) or not 1 <= len(description) <= 127:
        return _fail(400, "PARAM_ERROR", "description 长度应为 1 到 127 个字符")
    if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
        return _fail(400, "PARAM_ERROR", "out_trade_no 应为 6 到 32 位数字、大小写字母或_-|*")
    if not isinstance(notify_url, str) or not re.match(r"^https?://", notify_url):
        return _fail(400, "PARAM_ERROR", "notify_url 应为 http(s) 地址")
    total = amount.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        return _fail(400, "PARAM_ERROR", "amount.total 应为大于 0 的整数（分）")
    if amount.get("currency", "CNY") != "CNY":
        return _fail(400, "PARAM_ERROR", "currency 只支持 CNY")
    expires = None
    if body.get("time_expire"):
        try:
            expires = datetime.fromisoformat(body["time_expire"]).timestamp()
        except (TypeError, ValueError):
            return _fail(400, "PARAM_ERROR", "time_expire 应为 rfc3339 格式")
        if expires <= time.time():
            return _fail(400, "PARAM_ERROR", "time_expire 已经过去")
    terms = {"appid": body["appid"], "mchid": merchant["mchid"], "description": description,
             "total": total, "notify_url": notify_url}
    state = _state()
    with state.lock:
        order = state.orders.get(out_trade_no)
        if order is not None:
            trade_state = _trade_state(order)
            if trade_state == "SUCCESS":
                return _fail(400, "ORDERPAID", "该订单已支付")
            if trade_state == "CLOSED":
                return _fail(400, "ORDER_CLOSED", "该订单已关闭")
            if order["_terms"] != terms:
                return _fail(400, "INVALID_REQUEST", "201 商户订单号重复")
            return _answer({"code_url": order["code_url"]})
        order = {"appid": body["appid"], "mchid": merchant["mchid"], "out_trade_no": out_trade_no,
                 "description": description, "trade_type": "NATIVE", "trade_state": "NOTPAY",
                 "amount": {"total": total, "currency": "CNY"}, "notify_url": notify_url,
                 "time_expire": body.get("time_expire"), "attach": body.get("attach", ""),
                 "code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}",
                 "transaction_id": None, "success_time": None, "payer": None,
                 "_expires": expires, "_terms": terms}
        state.orders[out_trade_no] = order
    return _answer({"code_url": order["code_url"]})


def _transaction(order: dict) -> dict:
    """The transaction as WeChat Pay describes it (query answer and callback resource)."""
    paid = order["trade_state"] == "SUCCESS"
    doc = {"appid": order["appid"], "mchid": order["mchid"], "out_trade_no": order["out_trade_no"],
           "trade_type": "NATIVE", "trade_state": order["trade_state"],
           "trade_state_desc": {"SUCCESS": "支付成功", "NOTPAY": "未支付",
                                "CLOSED": "已关闭"}[order["trade_state"]],
           "attach": order["attach"],
           "amount": {"total": order["amount"]["total"], "currency": "CNY",
                      "payer_total": order["amount"]["total"] if paid else 0,
                      "payer_currency": "CNY"}}
    if paid:
        doc.update(transaction_id=order["transaction_id"], bank_type="OTHERS",
                   success_time=order["success_time"], payer={"openid": order["payer"]})
    return doc


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
def query(out_trade_no):
    merchant, problem = _authorized()
    if problem:
        return problem
    state = _state()
    with state.lock:
        order = state.orders.get(out_trade_no)
        if order is None or order["mchid"] != merchant["mchid"]:
            return _fail(404, "ORDER_NOT_EXIST", "订单不存在")
        if request.args.get("mchid") != merchant["mchid"]:
            return _fail(400, "PARAM_ERROR", "mchid 与请求的商户号不一致")
        _trade_state(order)
        doc = _transaction(order)
    return _answer(doc)


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
def close(out_trade_no):
    merchant, problem = _authorized()
    if problem:
        return problem
    state = _state()
    with state.lock:
        order = state.orders.get(out_trade_no)
        if order is None or order["mchid"] != merchant["mchid"]:
            return _fail(404, "ORDER_NOT_EXIST", "订单不存在")
        if _trade_state(order) == "SUCCESS":
            return _fail(400, "ORDERPAID", "该订单已支付")
        order["trade_state"] = "CLOSED"
    return _answer(None, 204)


# -- paying: the callback ---------------------------------------------------------------------

def encrypt_resource(keys: PayKeys, plain: dict, associated_data: str = "transaction") -> dict:
    nonce = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
    data = AESGCM(keys.apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(plain, ensure_ascii=False).encode(), associated_data.encode())
    return {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(data).decode(), "associated_data": associated_data,
            "nonce": nonce}


def build_callback(keys: PayKeys, resource: dict) -> tuple[dict[str, str], str]:
    """A payment notification as WeChat Pay posts it: signed headers and the JSON body."""
    notification = {"id": f"EV-{uuid.uuid4().hex[:24].upper()}",
                    "create_time": datetime.now(CST).isoformat(timespec="seconds"),
                    "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
                    "summary": "支付成功", "resource": encrypt_resource(keys, resource)}
    body = json.dumps(notification, ensure_ascii=False)
    headers = {**signed_headers(keys, body), "Content-Type": "application/json"}
    return headers, body


@bp.post("/_emulator/pay/<out_trade_no>")
def pay(out_trade_no):
    opts = request.get_json(force=True, silent=True) or {}
    state = _state()
    with state.lock:
        order = state.orders.get(out_trade_no)
        if order is None:
            return jsonify({"error": f"no order {out_trade_no}"}), 404
        trade_state = _trade_state(order)
        if trade_state == "CLOSED":
            return jsonify({"error": f"order {out_trade_no} is closed"}), 409
        if trade_state == "NOTPAY":
            order.update(trade_state="SUCCESS",
                         transaction_id="4200" + "".join(secrets.choice(string.digits)
                                                         for _ in range(24)),
                         success_time=datetime.now(CST).isoformat(timespec="seconds"),
                         payer=str(opts.get("openid") or "o_emulator_payer"))
        resource = _transaction(order)
        notify_url = order["notify_url"]
    if "total" in opts:
        resource["amount"].update(total=int(opts["total"]), payer_total=int(opts["total"]))
    for key in ("appid", "mchid", "transaction_id"):
        if key in opts:
            resource[key] = str(opts[key])
    headers, body = build_callback(state.keys, resource)
    result = {"out_trade_no": out_trade_no, "transaction_id": resource["transaction_id"],
              "notify_url": notify_url, "delivered": False, "status": None, "response": None,
              "callback": {"headers": headers, "body": body}}
    if opts.get("deliver", True):
        try:
            r = requests.post(notify_url, data=body.encode(), headers=headers, timeout=10)
            result.update(delivered=True, status=r.status_code, response=r.text)
        except requests.RequestException as exc:
            result.update(response=f"{type(exc).__name__}: {exc}")
    return jsonify(result)
