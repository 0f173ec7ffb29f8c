"""Freshness of WeChat's signed query strings.

The signature of a WeChat request covers the token, `timestamp` and `nonce` (and, in safe
mode, the encrypted body); in plain mode it does not cover the body. So a signed query string
seen once (a proxy's log) could carry any other message. Two checks close that:

- `timestamp` must be a whole number of seconds within WINDOW_SECONDS of the server's clock,
  or the request gets 403;
- a signed query (its timestamp and nonce: the signature binds both, so a replay carries the
  very same pair) is remembered with the message it came with until it is too old to be
  accepted again; the same query with another message gets 403. WeChat's own retry of a
  message, the same query with the same message, goes on to the dedupe row and its cached
  reply.

The query is remembered in Redis when REDIS_URL is set (`RedisNonces`: one SET NX per
message, shared by every process), else in the `webhook_nonce` table, written in the same
transaction as the message's dedupe row (bot/web/inbox.py) and cleared by the job
`retention.webhook_nonces`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

WINDOW_SECONDS = 300
MAX_NONCE = 64  # characters; WeChat's are about ten


class Replayed(Exception):
    """The signed query was used before with another message."""


def fresh_timestamp(value: str, now: float | None = None) -> int | None:
    """The query's timestamp if it is a whole number within the window, else None."""
    if not value or len(value) > 12 or not value.isascii() or not value.isdigit():
        return None
    ts = int(value)
    now = time.time() if now is None else now
    return ts if abs(now - ts) <= WINDOW_SECONDS else None


def query_id(timestamp: int, nonce: str) -> str | None:
    """How a signed query is remembered: `<timestamp>:<nonce>`; None for a nonce WeChat would
    never send (empty or too long)."""
    if not nonce or len(nonce) > MAX_NONCE:
        return None
    return f"{timestamp}:{nonce}"


def expires_at(timestamp: int) -> datetime:
    """When a query can no longer be accepted (its timestamp leaves the window)."""
    return datetime.fromtimestamp(timestamp + WINDOW_SECONDS + 1, timezone.utc)


class RedisNonces:
    """Queries remembered in Redis: `huzhu:nonce:<app id>:<timestamp>:<nonce>` → the message's
    dedupe key, expiring when the timestamp leaves the window."""

    def __init__(self, url: str, app_id: str):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = f"huzhu:nonce:{app_id}:"
        self.errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def claim(self, qid: str, timestamp: int, key: str) -> bool:
        """Remember the query with this message; False if it came before with another."""
        name = self.prefix + qid
        ttl = max(1, int(timestamp + WINDOW_SECONDS + 1 - time.time()))
        if self.redis.set(name, key, nx=True, ex=ttl):
            return True
        before = self.redis.get(name)
        return before is None or before.decode() == key
