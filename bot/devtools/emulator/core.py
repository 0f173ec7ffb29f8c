"""The emulator's shared memory: the log of calls, the failure knobs and the media store.

One lock guards all of it; the areas (WeChat, WeCom, and later WeChat Pay) keep their own state
beside it and use the same lock.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

# errmsg texts as the real APIs word them (the part before " rid: …")
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid appid",
    40029: "invalid code",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40023: "invalid sub button size",
    40032: "invalid openid list size",
    40037: "invalid template_id",
    40052: "invalid action name",
    40053: "invalid action info",
    40055: "invalid button url",
    40058: "invalid Request Parameter",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "api freq out of limit",
    45015: "response out of time limit",
    45047: "out of response count limit",
    45056: "too many tags",
    43101: "user refuse to accept the msg",
    45157: "invalid tag name",
    45158: "tag name too long",
    45159: "invalid tag id",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
    93000: "invalid webhook url",
    301019: "media md5 not match",
}


def error(code: int, detail: str = "") -> dict:
    """A WeChat-style error body: {"errcode": N, "errmsg": "… rid: …"}."""
    msg = ERRMSG.get(code, "error")
    if detail:
        msg = f"{msg}, {detail}"
    rid = f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
    return {"errcode": code, "errmsg": f"{msg} rid: {rid}"}


OK = {"errcode": 0, "errmsg": "ok"}

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png", "png"), (b"\xff\xd8\xff", "image/jpeg", "jpg"),
          (b"GIF87a", "image/gif", "gif"), (b"GIF89a", "image/gif", "gif"),
          (b"BM", "image/bmp", "bmp"))


def sniff(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(content type, file extension) from the bytes; the declared type when they say nothing."""
    for magic, ctype, ext in _MAGIC:
        if data.startswith(magic):
            return ctype, ext
    if data[4:8] == b"ftyp":
        return "video/mp4", "mp4"
    if data.startswith(b"#!AMR"):
        return "audio/amr", "amr"
    if declared and declared != "application/octet-stream":
        return declared, declared.rsplit("/", 1)[-1]
    return "application/octet-stream", "bin"


class MediaStore:
    """Media by media_id: in memory, and on disk under state_dir/media when there is one (so a
    restarted emulator still serves what it was given)."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._items: dict[str, dict] = {}
        if directory:
            directory.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, content_type: str, filename: str, kind: str) -> str:
        media_id = secrets.token_urlsafe(48)
        meta = {"content_type": content_type, "filename": filename, "kind": kind,
                "size": len(data), "created_at": int(time.time())}
        self._items[media_id] = {**meta, "data": data}
        if self.directory:
            (self.directory / media_id).write_bytes(data)
            (self.directory / f"{media_id}.json").write_text(json.dumps(meta))
        return media_id

    def get(self, media_id: str | None) -> dict | None:
        if not media_id or not _MEDIA_ID.match(media_id):
            return None
        item = self._items.get(media_id)
        if item is None and self.directory and (self.directory / media_id).is_file():
            meta = json.loads((self.directory / f"{media_id}.json").read_text())
            item = {**meta, "data": (self.directory / media_id).read_bytes()}
            self._items[media_id] = item
        return item


def _trim(value, limit: int = 16384):
    """Recorded bodies keep everything but huge strings (a WeCom image's base64)."""
    if isinstance(value, str) and len(value) > limit:
        return {"trimmed_chars": len(value),
                "sha256": hashlib.sha256(value.encode()).hexdigest()}
    if isinstance(value, dict):
        return {k: _trim(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_trim(v, limit) for v in value]
    return value


class Emulator:
    MAX_CALLS = 20000

    def __init__(self, state_dir: Path | None = None):
        self.state_dir = Path(state_dir) if state_dir else None
        self.lock = threading.RLock()
        self._calls: collections.deque[dict] = collections.deque(maxlen=self.MAX_CALLS)
        self._ids = itertools.count(1)
        self._failures: dict[str, list] = {}  # path -> [errcode, remaining]
        self.media = MediaStore(self.state_dir / "media" if self.state_dir else None)
        self._reset_hooks: list = []

    # -- the log of calls -------------------------------------------------------------------
    def record(self, *, method: str, path: str, query: dict, json_body=None, form=None,
               files=None, touser: str | None = None) -> dict:
        now = time.time()
        call = {"method": method, "path": path, "query": query,
                "json": _trim(json_body), "form": form or None, "files": files or None,
                "touser": touser, "recipients": None,
                "at": datetime.fromtimestamp(now, timezone.utc).isoformat(), "ts": now,
                "status": None, "errcode": None}
        with self.lock:
            call["id"] = next(self._ids)
            self._calls.append(call)
        return call

    def calls(self, since: int = 0, touser: str | None = None, path: str | None = None) -> list:
        with self.lock:
            rows = [dict(c) for c in self._calls if c["id"] > since]
        if touser:
            rows = [c for c in rows if c["touser"] == touser or touser in (c["recipients"] or ())]
        if path:
            rows = [c for c in rows if c["path"] == path]
        return rows

    def clear_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    # -- failure knobs ----------------------------------------------------------------------
    def arm_failure(self, path: str, errcode, count: int) -> None:
        with self.lock:
            if count > 0:
                self._failures[path] = [errcode, count]
            else:
                self._failures.pop(path, None)

    def disarm_failures(self) -> None:
        with self.lock:
            self._failures.clear()

    def take_failure(self, path: str):
        """The errcode the next call to path must answer, if a knob is armed for it."""
        with self.lock:
            rule = self._failures.get(path)
            if not rule:
                return None
            rule[1] -= 1
            if rule[1] <= 0:
                del self._failures[path]
            return rule[0]

    def on_reset(self, hook) -> None:
        self._reset_hooks.append(hook)

    def reset(self) -> None:
        """Forget calls, failure knobs and rate windows (tokens and media stay)."""
        with self.lock:
            self._calls.clear()
            self._failures.clear()
            for hook in self._reset_hooks:
                hook()
