"""`huzhu chat`: plays the villager. Builds the XML WeChat would post, signs it (and in safe mode
encrypts it) exactly as WeChat does, posts it to the webhook, and returns the passive reply and
the messages the emulator saw pushed to that user. The tests drive the bot through this too.
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import requests
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner, random_string

from bot.web.wxml import cdata, parse_flat

_msg_ids = itertools.count(random.randrange(10**15, 9 * 10**15))


@dataclass
class ChatResult:
    status: int
    reply: str  # the passive reply's text ('' for `success`)
    pushed: list[dict] = field(default_factory=list)  # emulator calls addressed to the user
    raw: str = ""

    @property
    def pushed_texts(self) -> list[str]:
        out = []
        for call in self.pushed:
            body = call.get("json") or {}
            if body.get("msgtype") == "text":
                out.append(body["text"]["content"])
            elif "data" in body:  # template message
                out.append("\n".join(str(v.get("value", "")) for v in body["data"].values()))
        return out

    @property
    def all_text(self) -> str:
        return "\n".join([self.reply, *self.pushed_texts])


def sign(token: str, timestamp: str, nonce: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return signer.signature


class Villager:
    def __init__(self, server: str, token: str, app_id: str, aes_key: str = "",
                 emulator: str | None = None, account: str = "gh_huzhu"):
        self.server = server.rstrip("/")
        self.token = token
        self.app_id = app_id
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self.emulator = emulator.rstrip("/") if emulator else None
        self.account = account
        self.http = requests.Session()

    # -- message builders ------------------------------------------------------------------
    def _xml(self, openid: str, msg_type: str, fields: dict, create_time: int | None = None,
             msg_id: int | None = None) -> str:
        parts = [f"<ToUserName>{cdata(self.account)}</ToUserName>",
                 f"<FromUserName>{cdata(openid)}</FromUserName>",
                 f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
                 f"<MsgType>{cdata(msg_type)}</MsgType>"]
        for k, v in fields.items():
            parts.append(f"<{k}>{cdata(str(v))}</{k}>")
        if msg_type != "event":
            parts.append(f"<MsgId>{msg_id or next(_msg_ids)}</MsgId>")
        return "<xml>" + "".join(parts) + "</xml>"

    def text_xml(self, openid: str, text: str, **kw) -> str:
        return self._xml(openid, "text", {"Content": text}, **kw)

    def post(self, openid: str, xml: str, wait_pushes: float = 0.0,
             signature: str | None = None, timeout: float = 10) -> ChatResult:
        """Sign, encrypt in safe mode, post; optionally wait for pushes to this user."""
        timestamp, nonce = str(int(time.time())), random_string(10)
        params = {"timestamp": timestamp, "nonce": nonce, "openid": openid,
                  "signature": signature or sign(self.token, timestamp, nonce)}
        body = xml
        if self.crypto is not None:
            enc = parse_flat(self.crypto.encrypt_message(xml, nonce, timestamp).encode())
            params.update(encrypt_type="aes", msg_signature=enc["MsgSignature"])
            body = (f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{enc['Encrypt']}]]></Encrypt></xml>")
        since = self.last_call_id() if wait_pushes else 0
        r = self.http.post(f"{self.server}/wechat", params=params, data=body.encode(),
                           headers={"Content-Type": "text/xml"}, timeout=timeout)
        reply = self.read_reply(r.text) if r.status_code == 200 else ""
        pushed = self.wait_pushes(openid, since, wait_pushes) if wait_pushes else []
        return ChatResult(r.status_code, reply, pushed, r.text)

    def read_reply(self, body: str) -> str:
        if body.strip() in ("", "success"):
            return ""
        fields = parse_flat(body.encode())
        if self.crypto is not None and "Encrypt" in fields:
            inner = self.crypto.decrypt_message(fields, fields["MsgSignature"], fields["TimeStamp"],
                                                fields["Nonce"])
            fields = parse_flat(inner.encode() if isinstance(inner, str) else inner)
        return fields.get("Content", "")

    # -- what the villager does ------------------------------------------------------------
    def text(self, openid: str, text: str, wait: float = 0.0, **kw) -> ChatResult:
        return self.post(openid, self.text_xml(openid, text, **kw), wait)

    def voice(self, openid: str, recognition: str, wait: float = 0.0) -> ChatResult:
        return self.post(openid, self._xml(openid, "voice", {
            "MediaId": "voice-" + random_string(12), "Format": "amr",
            "Recognition": escape(recognition)}), wait)

    def image(self, openid: str, path: str | Path, wait: float = 0.0) -> ChatResult:
        """Upload the photo to the emulator (as the user's phone does to WeChat), then post."""
        if not self.emulator:
            raise RuntimeError("sending an image needs the emulator's URL")
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.emulator}/_emulator/media",
                               files={"media": (Path(path).name, fh)}, timeout=30)
        r.raise_for_status()
        media = r.json()
        return self.post(openid, self._xml(openid, "image", {"PicUrl": media["pic_url"],
                                                            "MediaId": media["media_id"]}), wait)

    def event(self, openid: str, event: str, key: str = "", wait: float = 0.0) -> ChatResult:
        fields = {"Event": event}
        if key:
            fields["EventKey"] = key
        return self.post(openid, self._xml(openid, "event", fields), wait)

    def subscribe(self, openid: str, scene: str | None = None, wait: float = 0.0) -> ChatResult:
        return self.event(openid, "subscribe", f"qrscene_{scene}" if scene else "", wait)

    def click(self, openid: str, key: str, wait: float = 0.0) -> ChatResult:
        return self.event(openid, "CLICK", key, wait)

    # -- pushes seen by the emulator -------------------------------------------------------
    def calls(self, **params) -> list[dict]:
        r = self.http.get(f"{self.emulator}/_emulator/calls", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def last_call_id(self) -> int:
        if not self.emulator:
            return 0
        calls = self.calls()
        return max((c["id"] for c in calls), default=0)

    def wait_pushes(self, openid: str, since: int, seconds: float, quiet: float = 0.6) -> list[dict]:
        """Pushes to `openid` after call `since`: wait until none came for `quiet` seconds."""
        if not self.emulator:
            return []
        deadline = time.monotonic() + seconds
        seen: list[dict] = []
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            now = self.calls(touser=openid, since=since)
            if len(now) != len(seen):
                seen, last_change = now, time.monotonic()
            elif seen and time.monotonic() - last_change >= quiet:
                break
            time.sleep(0.1)
        return seen
