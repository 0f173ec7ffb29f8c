"""Village group chats (WeCom group bots) and village tags (mass send): where the disclosure,
the objection lists and the announcements go.

Every group post is one outbox row of kind `wecom.post` (one WeCom message each: a markdown part
of at most 4096 bytes, or an image) or `wecom.poster` (the disclosure poster, drawn by the
deliverer). WeCom allows a group bot 20 messages a minute, so `enqueue_posts` gives each row a
`next_attempt_at` that keeps every bot under that: a message may go out only when fewer than 20
of the same bot's messages are due in the 65 seconds before it (60 and a margin for delivery
delays). A batch of 45 messages goes as 20 now, 20 after 65 seconds and 5 after 130. The rows of
one bot carry `recipient = "wecom:<hash of the key>"`, so the pacing looks them up by index.

Mass sends to a village's followers are rows of kind `wechat.mass` {village_id, tag, text}: the
deliverer finds or creates the WeChat tag named after the village, tags the village's followers
and sends the text to the tag.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import outbox
from core.audit import audit
from core.errors import DomainError
from core.messages import cut_utf8
from core.models import GroupChat, OutboxMessage, OutboxStatus, Village, utcnow
from core.outbox import as_utc

PER_MINUTE = 20
SPACING = timedelta(seconds=65)
MARKDOWN_LIMIT = 4096  # bytes of UTF-8 per WeCom markdown message
TAG_NAME_BYTES = 30  # WeChat's limit for a tag name
_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class GroupError(DomainError, ValueError):
    """A group chat or announcement refused; `code` says why."""


# -- group chats ----------------------------------------------------------------------------

def add_group(session: Session, village: Village, key: str, actor: str) -> GroupChat:
    key = key.strip()
    if "key=" in key:  # the whole webhook URL pasted: keep only the key
        key = key.split("key=", 1)[1].split("&", 1)[0]
    if not _KEY.match(key):
        raise GroupError("bad_key")
    exists = session.scalar(select(GroupChat).where(GroupChat.village_id == village.id,
                                                    GroupChat.key == key))
    if exists is not None:
        raise GroupError("exists")
    row = GroupChat(village_id=village.id, key=key)
    session.add(row)
    session.flush()
    audit(session, actor, "group.add", "group_chat", row.id, None,
          {"village": village.full_name, "key": mask_key(key)})
    return row


def mask_key(key: str) -> str:
    """A group bot's key lets anyone post to the group: shown as 1a2b…9z8y."""
    return key[:4] + "…" + key[-4:] if len(key) > 8 else "…"


def groups_of(session: Session, village_ids) -> list[GroupChat]:
    ids = list(village_ids)
    if not ids:
        return []
    return list(session.scalars(select(GroupChat).where(GroupChat.village_id.in_(ids))
                                .order_by(GroupChat.village_id, GroupChat.id)))


def pool_village_ids(session: Session, pool_id: int) -> list[int]:
    return list(session.scalars(select(Village.id).where(Village.pool_id == pool_id)
                                .order_by(Village.id)))


# -- pacing ---------------------------------------------------------------------------------

def bot_recipient(key: str) -> str:
    return "wecom:" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _scheduled(session: Session, recipient: str, now: datetime) -> list[datetime]:
    """When this bot's messages went out in the last minute or are due to go."""
    rows = session.execute(select(OutboxMessage.status, OutboxMessage.next_attempt_at,
                                  OutboxMessage.sent_at)
                           .where(OutboxMessage.recipient == recipient,
                                  OutboxMessage.status != OutboxStatus.dead))
    times = []
    for status, due, sent in rows:
        if status == OutboxStatus.pending and due is not None:
            times.append(as_utc(due))
        elif sent is not None and as_utc(sent) > now - SPACING:
            times.append(as_utc(sent))
    return sorted(times)


def next_slot(times: list[datetime], now: datetime) -> datetime:
    """The earliest time, not before `now` nor before the last scheduled message (order is
    kept), with fewer than 20 messages in the SPACING before it."""
    t = max([now, *times[-1:]])
    if len(times) >= PER_MINUTE:
        t = max(t, times[-PER_MINUTE] + SPACING)
    return t


def enqueue_posts(session: Session, key: str, messages: list[tuple[str, dict]],
                  now: datetime | None = None) -> list[OutboxMessage]:
    """Queue one group's messages, in order, paced: messages are (kind, payload) with kind
    `wecom.post` ({markdown} of at most 4096 bytes, or {image_path}) or `wecom.poster`."""
    now = now or utcnow()
    recipient = bot_recipient(key)
    times = _scheduled(session, recipient, now)
    rows = []
    for kind, payload in messages:
        if kind == "wecom.post" and "markdown" in payload:
            if len(payload["markdown"].encode()) > MARKDOWN_LIMIT:
                raise ValueError("a markdown part over 4096 bytes: split it first")
        at = next_slot(times, now)
        times.append(at)
        row = outbox.enqueue(session, kind, {"key": key, **payload}, not_before=at)
        row.recipient = recipient
        rows.append(row)
    session.flush()
    return rows


def split_parts(blocks: list[str], limit: int = MARKDOWN_LIMIT,
                reserve: int = 0) -> list[list[str]]:
    """Blocks (lines or paragraphs, each rendered from a template) packed in order into parts
    of at most `limit - reserve` bytes joined by newlines; a block longer than that is cut
    between characters."""
    room = limit - reserve
    parts: list[list[str]] = []
    current: list[str] = []
    size = -1
    for block in blocks:
        pieces = cut_utf8(block, room) if len(block.encode()) > room else [block]
        for piece in pieces:
            n = len(piece.encode())
            if current and size + 1 + n > room:
                parts.append(current)
                current, size = [], -1
            current.append(piece)
            size += 1 + n
    if current:
        parts.append(current)
    return parts


# -- village tags ---------------------------------------------------------------------------

def tag_name(village: Village) -> str:
    """The WeChat tag of a village's followers: its full name (镇/村), or its own name when the
    full name is over WeChat's 30 bytes."""
    name = village.full_name
    if len(name.encode()) <= TAG_NAME_BYTES:
        return name
    name = village.name
    while len(name.encode()) > TAG_NAME_BYTES:
        name = name[:-1]
    return name


def enqueue_mass(session: Session, village: Village, text: str) -> OutboxMessage:
    """Queue a mass send of `text` to the village's followers (by its tag)."""
    return outbox.enqueue(session, "wechat.mass", {"village_id": village.id,
                                                  "tag": tag_name(village), "text": text})


# -- announcements --------------------------------------------------------------------------

def followers_of(session: Session, village_id: int) -> list[str]:
    """Openids of a village's followers: users tagged with the village (village QR code, or a
    village picked in a dialogue) and users linked to a household of the village; subscribed
    only."""
    from core.models import Household, HouseholdLink, WechatUser

    tagged = select(WechatUser.openid).where(WechatUser.village_id == village_id,
                                             WechatUser.subscribed.is_(True))
    linked = (select(WechatUser.openid)
              .join(HouseholdLink, HouseholdLink.openid == WechatUser.openid)
              .join(Household, Household.id == HouseholdLink.household_id)
              .where(Household.village_id == village_id, WechatUser.subscribed.is_(True)))
    return sorted(set(session.scalars(tagged)) | set(session.scalars(linked)))


def reach(session: Session, villages: list[Village]) -> list[dict]:
    """Per village: how many group chats and followers an announcement would reach."""
    groups = groups_of(session, [v.id for v in villages])
    out = []
    for v in villages:
        out.append({"village": v, "groups": sum(1 for g in groups if g.village_id == v.id),
                    "followers": len(followers_of(session, v.id))})
    return out


def announce(session: Session, actor: str, villages: list[Village], text: str,
             signer: str, now: datetime | None = None) -> dict:
    """Queue an announcement to the villages' group chats (markdown, paced) and, by mass send,
    to their followers. Returns {groups, messages, villages}."""
    from core.messages import render

    now = now or utcnow()
    markdown = render("announce_markdown", text=text, signer=signer)
    parts = ["\n".join(p) for p in split_parts(markdown.split("\n"))]
    groups = groups_of(session, [v.id for v in villages])
    messages = 0
    for g in groups:
        messages += len(enqueue_posts(session, g.key, [("wecom.post", {"markdown": p})
                                                       for p in parts], now=now))
    mass = render("announce_mass", text=text, signer=signer)
    reached = 0
    for v in villages:
        if followers_of(session, v.id):
            enqueue_mass(session, v, mass)
            reached += 1
    audit(session, actor, "announce.sent", "announcement", None, None,
          {"villages": [v.full_name for v in villages], "groups": len(groups),
           "messages": messages, "text": text})
    return {"groups": len(groups), "messages": messages, "villages": len(villages),
            "mass_villages": reached}
