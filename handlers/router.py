"""The router: one Incoming in, a list of Reply out, inside the message's transaction.

Order: events; admin commands (`/…`); `取消`; an open dialogue (unless the user picks another
menu entry by its word or key); the menu by number, word or key; anything else gets the menu.
"""
from __future__ import annotations

import unicodedata
from dataclasses import replace
from typing import Callable, NamedTuple

from core.messages import render
from core.models import Village
from handlers import admin, dialogue, menu
from handlers.dialogue import Dialogue
from handlers.types import Ctx, Incoming, Reply

MAX_TEXT = 600  # characters a villager message may have; longer ones are refused politely


# invisible characters a pasted or crafted text may carry: zero-width spaces and joiners
# (U+200B–U+200D, U+2060–U+2064, U+FEFF the BOM, U+180E, U+00AD the soft hyphen), direction
# marks and bidi controls (U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069)
_INVISIBLE = dict.fromkeys([0x00AD, 0x061C, 0x180E, 0xFEFF, *range(0x200B, 0x2010),
                            *range(0x202A, 0x202F), *range(0x2060, 0x2065),
                            *range(0x2066, 0x206A)])


def normalise(text: str) -> str:
    """Full-width digits and letters to half-width (NFKC), invisible characters removed
    (`帮\u200b助` is `帮助`), trimmed; voice recognition ends with '。'."""
    text = unicodedata.normalize("NFKC", text or "").translate(_INVISIBLE).strip()
    return text.rstrip("。.!！")


def menu_reply(greeting: str | None = None) -> Reply:
    return Reply(render("menu", greeting=greeting))


class Target(NamedTuple):
    """Where an ordinary message goes once the open dialogue is known."""
    to: str  # advance | start | help | unavailable | not_understood
    dialogue: Dialogue | None = None  # advance, start: the dialogue
    word: str = ""  # unavailable: the menu word


class Route(NamedTuple):
    """Where one message goes, decided once by `route(msg)` for both the webhook (which line
    handles it) and the handlers (which of them answers it).

    `to`: event (subscribe, scan, unsubscribe, …), refuse (a type, an empty or a too long text:
    `refusal` says which), admin (a `/` command: `command`, and `command_text`, the words after
    it as typed), cancel (`取消`), or input — an ordinary text, voice or image, which goes to
    the open dialogue, a dialogue it starts (`entry` outside a dialogue: a menu number, word or
    key, or an entry word; `switch` inside one: the same but a number) or the menu:
    `target(open_dialogue)`, the one rule both the webhook and the router follow."""
    to: str
    msg: Incoming  # its text normalised; a menu click as the text of its key
    refusal: tuple[str, dict] | None = None
    command: str = ""
    command_text: str = ""
    entry: Dialogue | None = None
    switch: Dialogue | None = None

    @property
    def text(self) -> str:
        return self.msg.text

    def target(self, open_dialogue: str | None) -> Target:
        """The way of an input message, given the name of the user's open dialogue (None: no
        dialogue, or one that timed out). In an open dialogue a menu number is an answer to it;
        another entry's word or key leaves it for that entry."""
        if open_dialogue is not None:
            found = dialogue.REGISTRY.get(open_dialogue)
            if found is not None and (self.switch is None or self.switch.name == open_dialogue):
                return Target("advance", found)
            if self.switch is not None:
                return Target("start", self.switch)
        if self.msg.kind == "image":
            claim = dialogue.REGISTRY.get("claim")
            return Target("start", claim) if claim is not None else Target("not_understood")
        if self.text in menu.HELP_WORDS:
            return Target("help")
        if self.entry is not None:
            return Target("start", self.entry)
        item = menu.find(self.text)
        if item is not None:
            return Target("unavailable", word=item.word)
        return Target("not_understood")

    def beside_line(self, open_dialogue: Callable[[], str | None]) -> bool:
        """Whether the webhook handles this message beside the batch line, in a transaction of
        its own: an administrator command (it may read a whole pool), or a message that starts
        a dialogue calling a service outside (WeChat Pay), so that neither holds up other
        villagers' messages. `open_dialogue` is asked only when the answer depends on it (a
        message that could start such a dialogue)."""
        if self.to == "admin":
            return True
        if self.to != "input" or not (self.entry is not None and self.entry.calls_out
                                      or self.switch is not None and self.switch.calls_out):
            return False
        target = self.target(open_dialogue())
        return target.to == "start" and target.dialogue.calls_out


def route(msg: Incoming) -> Route:
    """The one decision about a message that needs no database: what kind of message it is and
    which dialogue its text would start. The open dialogue is applied by `Route.target`."""
    if msg.kind == "event":
        if msg.event != "click":
            return Route("event", msg)
        msg = replace(msg, kind="text", event=None)
    if msg.kind not in ("text", "voice", "image"):
        return Route("refuse", msg, refusal=("unsupported_type", {}))
    text = normalise(msg.text)
    if msg.kind in ("text", "voice"):
        if not text:
            return Route("refuse", msg, refusal=("empty_text", {}))
        if len(text) > MAX_TEXT:
            return Route("refuse", msg, refusal=("text_too_long",
                                                 {"length": len(text), "limit": MAX_TEXT}))
        if text.startswith(("/", "／")):
            # the words after the command, as typed (punctuation and line breaks kept: /公告)
            parts = (msg.text or "").strip().lstrip("/／").split(maxsplit=1)
            return Route("admin", msg, command=text,
                         command_text=parts[1] if len(parts) > 1 else "")
    if text != msg.text:
        msg = replace(msg, text=text)
    if msg.kind == "image":
        return Route("input", msg)
    if text in menu.CANCEL_WORDS:
        return Route("cancel", msg)
    # dialogue.find_entry(text) and find_entry(text, include_numbers=False), menu looked up once
    item = menu.find(text)
    if item is not None and text != item.number:
        entry = switch = dialogue.REGISTRY.get(item.dialogue)
    else:
        switch = dialogue.find_word(text)
        entry = dialogue.REGISTRY.get(item.dialogue) if item is not None else switch
    return Route("input", msg, entry=entry, switch=switch)


def handle(ctx: Ctx, msg: Incoming) -> list[Reply]:
    """The replies to one message, along its route (`ctx.route`, decided by the webhook, or
    decided here)."""
    r = ctx.route if ctx.route is not None else route(msg)
    ctx.route = r
    if r.to == "event":
        return _event(ctx, r.msg)
    if r.to == "refuse":
        name, params = r.refusal
        return [Reply(render(name, **params))]
    if r.to == "admin":
        return admin.handle(ctx, r.command)
    if r.to == "cancel":
        had = dialogue.clear_state(ctx)
        return [Reply(render("cancelled", had_dialogue=had))]
    row, timed_out = dialogue.load_state(ctx)
    prefix = [Reply(render("timed_out"))] if timed_out else []
    target = r.target(row.dialogue if row is not None else None)
    if target.to == "advance":
        replies = dialogue.advance(ctx, row, r.msg)
        if replies is not None:
            return replies
        row, target = None, r.target(None)  # the dialogue passed the message on
    if target.to == "start":
        return prefix + dialogue.start(ctx, target.dialogue, r.msg)
    if target.to == "help":
        return prefix + [menu_reply()]
    if target.to == "unavailable":
        return prefix + [Reply(render("not_available", word=target.word))]
    if row is None and r.msg.kind != "image":
        caught = dialogue.catch(ctx, r.msg)
        if caught is not None:
            return prefix + caught
    return prefix + [Reply(render("not_understood",
                                  text="图片" if r.msg.kind == "image" else r.text[:20]))]


def _event(ctx: Ctx, msg: Incoming) -> list[Reply]:
    if msg.event == "subscribe" or msg.event == "scan":
        ctx.user.subscribed = True
        village = _village_from_scene(ctx, msg.scene)
        if village is not None:
            ctx.user.village_id = village.id
        if msg.event == "scan" and village is None:
            return []
        return [Reply(render("welcome", village=village.full_name if village else None))]
    if msg.event == "unsubscribe":
        ctx.user.subscribed = False
        dialogue.clear_state(ctx)
        return []
    return []


def _village_from_scene(ctx: Ctx, scene: str | None) -> Village | None:
    """Village QR codes carry the scene `village:<id>`."""
    if not scene or not scene.startswith("village:"):
        return None
    try:
        return ctx.session.get(Village, int(scene.split(":", 1)[1]))
    except ValueError:
        return None
