"""WeChat Pay API v3, Native QR payments, through `wechatpayv3` (wechatpy only speaks v2).

Configuration (SPEC): PAY_MCH_ID, PAY_APIV3_KEY, PAY_PRIVATE_KEY_FILE and PAY_CERT_SERIAL (the
merchant's API key pair: requests are signed with it), PAY_PUBLIC_KEY_FILE and PAY_PUBLIC_KEY_ID
(WeChat Pay's public key: responses and callbacks are verified with it; callback resources are
decrypted with the APIv3 key), PAY_API_BASE, PAY_NOTIFY_URL; the appid is WECHAT_APP_ID.

`wechatpayv3` has no setting for the API's base URL: its `Core` keeps it in `_gate_way`, which is
set here from PAY_API_BASE — the only thing it changes. The public-key mode (public_key +
public_key_id) means no platform certificates are ever downloaded.

PAY_PROVIDER=emulator runs exactly the same code with the emulator's key pair: whatever is not
configured is taken from the emulator (`GET {PAY_API_BASE}/_emulator/pay/config`, also printed by
`huzhu emulator`), and the merchant key pair is generated once into DATA_DIR/pay/ and made known
to the emulator, which checks every request's signature with it. Real credentials are a
configuration change only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import load_public_key, rsa_verify

from core.payments import GatewayError

log = logging.getLogger("huzhu.pay")

TIMEOUT = (3, 5)  # connect, read: a Native order is made while the villager waits
CALLBACK_SKEW = 300  # seconds a callback's signed timestamp may differ from our clock
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CALLBACK_HEADERS = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce",
                    "Wechatpay-Serial", "Wechatpay-Signature-Type")
KEYS = ("PAY_PROVIDER", "PAY_API_BASE", "PAY_MCH_ID", "PAY_APIV3_KEY", "PAY_PRIVATE_KEY_FILE",
        "PAY_CERT_SERIAL", "PAY_PUBLIC_KEY_FILE", "PAY_PUBLIC_KEY_ID", "PAY_NOTIFY_URL",
        "WECHAT_APP_ID", "DATA_DIR")


@dataclass(frozen=True)
class PaySettings:
    api_base: str
    appid: str
    mchid: str
    apiv3_key: str
    private_key_pem: str
    cert_serial: str
    public_key_pem: str
    public_key_id: str
    notify_url: str


def _read(path: str, key: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayError(f"HUZHU_{key}: cannot read {path}: {exc.strerror}") from exc


def emulator_config(api_base: str) -> dict:
    """The emulator's WeChat Pay configuration: mchid, apiv3_key, public_key, public_key_id."""
    try:
        r = requests.get(f"{api_base.rstrip('/')}/_emulator/pay/config", timeout=TIMEOUT)
        r.raise_for_status()
        return r.json()
    except (requests.RequestException, ValueError) as exc:
        raise GatewayError(f"the emulator's WeChat Pay configuration is not reachable at "
                           f"{api_base}: {exc}") from exc


def merchant_key_file(data_dir: Path) -> Path:
    """Emulator mode: the merchant's private key, generated once (readable by its owner only)."""
    path = Path(data_dir) / "pay" / "merchant_key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # the first writer wins; everyone then reads the same key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path


def _public_pem_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def settings(cfg) -> PaySettings:
    v = cfg.values
    base = v["PAY_API_BASE"].rstrip("/")
    mchid, apiv3 = v["PAY_MCH_ID"], v["PAY_APIV3_KEY"]
    public_pem = _read(v["PAY_PUBLIC_KEY_FILE"], "PAY_PUBLIC_KEY_FILE") if v["PAY_PUBLIC_KEY_FILE"] else ""
    public_id = v["PAY_PUBLIC_KEY_ID"]
    emulated = v["PAY_PROVIDER"] == "emulator"
    if emulated and not (mchid and apiv3 and public_pem and public_id):
        emu = emulator_config(base)
        mchid, apiv3 = mchid or emu["mchid"], apiv3 or emu["apiv3_key"]
        if not (public_pem and public_id):
            public_pem, public_id = emu["public_key"], emu["public_key_id"]
    key_file = v["PAY_PRIVATE_KEY_FILE"] or (str(merchant_key_file(cfg.data_dir)) if emulated else "")
    if not key_file:
        raise GatewayError("HUZHU_PAY_PRIVATE_KEY_FILE: the merchant's API private key is needed")
    private_pem = _read(key_file, "PAY_PRIVATE_KEY_FILE")
    serial = v["PAY_CERT_SERIAL"]
    if not serial and emulated:
        serial = hashlib.sha1(_public_pem_of(private_pem).encode()).hexdigest().upper()
    for name, value in (("PAY_MCH_ID", mchid), ("PAY_APIV3_KEY", apiv3),
                        ("PAY_CERT_SERIAL", serial), ("PAY_PUBLIC_KEY_ID", public_id)):
        if not value:
            raise GatewayError(f"HUZHU_{name}: required for WeChat Pay")
    if len(apiv3.encode()) != 32:
        raise GatewayError("HUZHU_PAY_APIV3_KEY: the APIv3 key is 32 characters")
    s = PaySettings(api_base=base, appid=v["WECHAT_APP_ID"], mchid=mchid, apiv3_key=apiv3,
                    private_key_pem=private_pem, cert_serial=serial, public_key_pem=public_pem,
                    public_key_id=public_id, notify_url=v["PAY_NOTIFY_URL"])
    if emulated:
        _introduce_merchant(s)
    return s


def _introduce_merchant(s: PaySettings) -> None:
    """Emulator mode: tell the emulator our public key, as a merchant uploads its API
    certificate to WeChat Pay, so it can check our requests' signatures."""
    try:
        r = requests.post(f"{s.api_base}/_emulator/pay/merchants", timeout=TIMEOUT, json={
            "mchid": s.mchid, "serial_no": s.cert_serial,
            "public_key": _public_pem_of(s.private_key_pem)})
        r.raise_for_status()
    except requests.RequestException as exc:
        raise GatewayError(f"cannot register the merchant key with the emulator: {exc}") from exc


class WeChatPayGateway:
    """Native orders, queries, closing, and callback verification — the core.payments.Gateway."""

    def __init__(self, s: PaySettings):
        self.s = s
        self.appid, self.mchid = s.appid, s.mchid
        try:
            self.client = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=s.mchid,
                                    private_key=s.private_key_pem, cert_serial_no=s.cert_serial,
                                    appid=s.appid, apiv3_key=s.apiv3_key, notify_url=s.notify_url,
                                    timeout=TIMEOUT, public_key=s.public_key_pem,
                                    public_key_id=s.public_key_id)
            self._public_key = load_public_key(s.public_key_pem)
        except Exception as exc:  # wechatpayv3 raises bare Exceptions for unreadable keys
            raise GatewayError(f"WeChat Pay keys cannot be loaded: {exc}") from exc
        self.client._core._gate_way = s.api_base  # see the module docstring

    # -- requests ------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs) -> tuple[int, object]:
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as exc:
            raise GatewayError(f"{what}: WeChat Pay not reachable: {exc}") from exc
        except Exception as exc:  # e.g. "failed to verify the signature" of a response
            raise GatewayError(f"{what}: {exc}") from exc

    @staticmethod
    def _json(what: str, code: int, body) -> dict:
        try:
            data = json.loads(body) if body else {}
        except (TypeError, ValueError):
            data = {}
        if not 200 <= code < 300:
            raise GatewayError(f"{what}: HTTP {code} {data.get('code', '')} "
                               f"{data.get('message', '')}".rstrip())
        return data

    def native(self, out_trade_no: str, description: str, amount_fen: int,
               time_expire: datetime | None) -> str:
        """A Native order; its code_url (asking again for the same order gives it again)."""
        code, body = self._call("native order", self.client.pay, description=description[:127],
                                out_trade_no=out_trade_no,
                                amount={"total": int(amount_fen), "currency": "CNY"},
                                time_expire=time_expire.isoformat(timespec="seconds")
                                if time_expire else None,
                                notify_url=self.s.notify_url)
        data = self._json("native order", code, body)
        if not data.get("code_url"):
            raise GatewayError("native order: no code_url in the answer")
        return data["code_url"]

    def query(self, out_trade_no: str) -> dict:
        code, body = self._call("query", self.client.query, out_trade_no=out_trade_no)
        return self._json("query", code, body)

    def close(self, out_trade_no: str) -> None:
        code, body = self._call("close", self.client.close, out_trade_no=out_trade_no)
        self._json("close", code, body)

    # -- callbacks ----------------------------------------------------------------------------
    def verify_callback(self, headers, body: bytes) -> tuple[dict | None, str]:
        """(the notification with its decrypted `resource`, "") for a genuine callback, else
        (None, why). Genuine: signed by WeChat Pay's public key (this key's id in
        Wechatpay-Serial) over timestamp, nonce and body, timestamp within five minutes."""
        h = {name: (headers.get(name) or "") for name in CALLBACK_HEADERS}
        if not all(h.values()):
            return None, "missing signature headers"
        if h["Wechatpay-Signature-Type"] != SIGNATURE_TYPE:
            return None, "unknown signature type"
        if h["Wechatpay-Serial"] != self.s.public_key_id:
            return None, "unknown public key id"
        try:
            skew = abs(time.time() - int(h["Wechatpay-Timestamp"]))
            text = body.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None, "malformed timestamp or body"
        if skew > CALLBACK_SKEW:
            return None, "stale timestamp"
        if not rsa_verify(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], text,
                          h["Wechatpay-Signature"], self._public_key):
            return None, "bad signature"
        try:
            data = self.client.callback(h, text)  # verifies again, then decrypts the resource
        except Exception as exc:  # unknown algorithm, broken JSON
            return None, f"cannot read the notification: {type(exc).__name__}"
        if not isinstance(data, dict) or not isinstance(data.get("resource"), dict):
            return None, "cannot decrypt the resource (check HUZHU_PAY_APIV3_KEY)"
        return data, ""


_cache: dict[tuple, WeChatPayGateway] = {}
_cache_lock = threading.Lock()


def gateway_for(cfg) -> WeChatPayGateway:
    """One gateway per configuration (built on first use; not cached when it fails)."""
    key = tuple(str(cfg.values.get(k, "")) for k in KEYS)
    with _cache_lock:
        gw = _cache.get(key)
        if gw is None:
            gw = _cache[key] = WeChatPayGateway(settings(cfg))
        return gw

