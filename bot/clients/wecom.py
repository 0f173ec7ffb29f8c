"""Village group chats: WeCom (企业微信) group-bot webhooks,
POST {WECOM_WEBHOOK_BASE}/cgi-bin/webhook/send?key=KEY.

Markdown longer than WeCom's 4096 bytes is split on line boundaries into several messages.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import requests

from core.config import Config
from core.messages import cut_utf8

MARKDOWN_LIMIT = 4096  # bytes of UTF-8
TEXT_LIMIT = 2048
IMAGE_LIMIT = 2 << 20  # before base64
RETRYABLE = {-1, 45009, 45033}  # system busy, rate limit (20 a minute per bot), concurrency


class WeComError(Exception):
    def __init__(self, errcode: int | None, errmsg: str, retryable: bool):
        super().__init__(f"WeCom {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.retryable = retryable


def split_markdown(content: str, limit: int = MARKDOWN_LIMIT) -> list[str]:
    """Parts of at most `limit` UTF-8 bytes, cut at line ends ("\\n".join(parts) == content
    unless a single line is longer than the limit)."""
    parts: list[str] = []
    current: list[str] = []
    size = -1  # bytes of "\n".join(current)
    for line in content.split("\n"):
        pieces = cut_utf8(line, limit) if len(line.encode()) > limit else [line]
        for piece in pieces:
            n = len(piece.encode())
            if current and size + 1 + n > limit:
                parts.append("\n".join(current))
                current, size = [], -1
            current.append(piece)
            size += 1 + n
    if current and any(current):
        parts.append("\n".join(current))
    return parts


class GroupBot:
    """One group chat's bot."""

    def __init__(self, base: str, key: str, http: requests.Session | None = None,
                 timeout: float = 10.0):
        self.url = f"{base.rstrip('/')}/cgi-bin/webhook/send"
        self.key = key
        self.http = http or requests.Session()
        self.timeout = timeout

    @classmethod
    def from_config(cls, cfg: Config, key: str, http: requests.Session | None = None) -> "GroupBot":
        return cls(cfg.WECOM_WEBHOOK_BASE, key, http)

    def _post(self, body: dict) -> None:
        try:
            res = self.http.post(self.url, params={"key": self.key}, json=body,
                                 timeout=self.timeout)
            res.raise_for_status()
            result = res.json()
        except (requests.RequestException, ValueError) as exc:
            raise WeComError(None, str(exc), retryable=True) from exc
        code = int(result.get("errcode", 0))
        if code != 0:
            raise WeComError(code, result.get("errmsg", ""), retryable=code in RETRYABLE)

    def markdown_parts(self, content: str) -> list[str]:
        parts = split_markdown(content)
        if not parts:
            raise ValueError("empty markdown")
        return parts

    def send_markdown(self, content: str, start: int = 0) -> int:
        """Post content as one message or several (each ≤ 4096 bytes), from part `start`;
        returns the number of parts."""
        parts = self.markdown_parts(content)
        for part in parts[start:]:
            self.send_markdown_part(part)
        return len(parts)

    def send_markdown_part(self, part: str) -> None:
        self._post({"msgtype": "markdown", "markdown": {"content": part}})

    def send_text(self, content: str, mentioned_mobile_list: list[str] | None = None) -> None:
        if not content or len(content.encode()) > TEXT_LIMIT:
            raise ValueError(f"text must be 1 to {TEXT_LIMIT} bytes")
        body = {"content": content}
        if mentioned_mobile_list:
            body["mentioned_mobile_list"] = mentioned_mobile_list
        self._post({"msgtype": "text", "text": body})

    def send_image(self, image: bytes | str | Path) -> None:
        """A JPG or PNG of at most 2 MB."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        if not data or len(data) > IMAGE_LIMIT:
            raise ValueError(f"a group-bot image must be 1 byte to 2 MB, got {len(data)} bytes")
        self._post({"msgtype": "image", "image": {
            "base64": base64.b64encode(data).decode(), "md5": hashlib.md5(data).hexdigest()}})
