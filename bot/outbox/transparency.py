"""Outbox deliverers of the transparency area (payloads: core/groups.py):

- `wecom.poster` {key, poster, name}: draws the disclosure poster (bot/clients/poster.py) once per
  content under DATA_DIR/posters/ and posts it to the group as an image; with no CJK font on
  the machine there is no poster and the row is done (the markdown went as text).
- `wechat.mass` {village_id, tag, text}: finds or creates the village's WeChat tag, tags the
  village's followers and mass-sends the text to the tag.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re

from bot.clients import poster
from bot.outbox.deliver import PERMANENT_WECHAT, Context, PermanentError, RetryableError, deliverer
from bot.clients.wechat import WeChatClientException
from bot.clients.wecom import GroupBot, WeComError
from core.groups import followers_of
from core.models import OutboxMessage

log = logging.getLogger("huzhu.deliver")

TAG_EXISTS = 45157  # invalid tag name: WeChat's answer for a name already taken
PERMANENT_MASS = PERMANENT_WECHAT | {45056, 45158, 45159}  # too many tags, name too long, no tag


def poster_path(ctx: Context, name: str, data: dict):
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False)
                            .encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60]
    return ctx.cfg.data_dir / "posters" / f"{safe}-{digest}.png"


@deliverer("wecom.poster")
def post_poster(ctx: Context, row: OutboxMessage) -> None:
    try:
        key, data = row.payload["key"], row.payload["poster"]
        path = poster_path(ctx, row.payload.get("name", "poster"), data)
        if not path.exists():
            drawn = poster.disclosure_poster(data, path)
            if drawn.path is None:
                log.info("outbox id=%s: no CJK font, no poster (the text was posted)", row.id)
                return None
        GroupBot.from_config(ctx.cfg, key, ctx.http).send_image(path)
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"bad wecom.poster payload: {exc!r}") from exc
    except WeComError as exc:
        raise (RetryableError if exc.retryable else PermanentError)(str(exc)) from exc
    return None


@deliverer("wechat.mass")
def mass_send(ctx: Context, row: OutboxMessage) -> None:
    try:
        village_id, name, text = (row.payload["village_id"], row.payload["tag"],
                                  row.payload["text"])
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"bad wechat.mass payload: {exc!r}") from exc
    with ctx.db.session() as s:
        openids = followers_of(s, village_id)
    if not openids:
        return None
    wc = ctx.wechat
    try:
        tag_id = wc.tags().get(name)
        if tag_id is None:
            try:
                tag_id = wc.tag_create(name)
            except WeChatClientException as exc:
                if exc.errcode != TAG_EXISTS:
                    raise
                tag_id = wc.tags().get(name)  # created a moment ago by another worker
                if tag_id is None:
                    raise PermanentError(f"WeChat refuses the tag name {name!r}") from exc
        wc.tag_users(tag_id, openids)
        wc.mass_send_text_to_tag(tag_id, text)
    except WeChatClientException as exc:
        error = f"WeChat {exc.errcode}: {exc.errmsg}"
        raise (PermanentError if exc.errcode in PERMANENT_MASS else RetryableError)(error) from exc
    return None
