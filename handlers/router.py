"""The router: one Incoming in, a list of Reply out, inside the message's transaction.

Order: events; admin commands (`/…`); `取消`; an open dialogue (unless the user picks another
menu entry by its word or key); the menu by number, word or key; anything else gets the menu.
"""
from __future__ import annotations

import unicodedata


from core.messages import render
from core.models import Village
from handlers import admin, dialogue, menu
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


def handle(ctx: Ctx, msg: Incoming) -> list[Reply]:
    if msg.kind == "event":
        return _event(ctx, msg)
    if msg.kind not in ("text", "voice", "image"):
        return [Reply(render("unsupported_type"))]
    text = normalise(msg.text)
    if msg.kind in ("text", "voice"):
        if not text:
            return [Reply(render("empty_text"))]
        if len(text) > MAX_TEXT:
            return [Reply(render("text_too_long", length=len(text), limit=MAX_TEXT))]
        if text.startswith(("/", "／")):
            # the words after the command, as typed (punctuation and line breaks kept: /公告)
            parts = (msg.text or "").strip().lstrip("/／").split(maxsplit=1)
            ctx.extra["command_text"] = parts[1] if len(parts) > 1 else ""
            return admin.handle(ctx, text)
        if text in menu.CANCEL_WORDS:
            had = dialogue.clear_state(ctx)
            return [Reply(render("cancelled", had_dialogue=had))]
    msg = Incoming(**{**msg.__dict__, "text": text})
    row, timed_out = dialogue.load_state(ctx)
    prefix = [Reply(render("timed_out"))] if timed_out else []
    if row is not None:
        switch = dialogue.find_entry(text, include_numbers=False) if msg.kind != "image" else None
        if switch is None or switch.name == row.dialogue:
            return dialogue.advance(ctx, row, msg)
        return dialogue.start(ctx, switch, msg)
    return prefix + _menu_choice(ctx, msg, text)


def _menu_choice(ctx: Ctx, msg: Incoming, text: str) -> list[Reply]:
    if msg.kind == "image":
        found = dialogue.REGISTRY.get("claim")
        if found is not None:
            return dialogue.start(ctx, found, msg)
        return [Reply(render("not_understood", text="图片"))]
    if text in menu.HELP_WORDS:
        return [menu_reply()]
    found = dialogue.find_entry(text)
    if found is not None:
        return dialogue.start(ctx, found, msg)
    item = menu.find(text)
    if item is not None:
        return [Reply(render("not_available", word=item.word))]
    return [Reply(render("not_understood", text=text[:20]))]


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
    if msg.event == "click":
        return handle(ctx, Incoming(**{**msg.__dict__, "kind": "text", "event": None}))
    return []


def _village_from_scene(ctx: Ctx, scene: str | None) -> Village | None:
    """Village QR codes carry the scene `village:<id>`."""
    if not scene or not scene.startswith("village:"):
        return None
    try:
        return ctx.session.get(Village, int(scene.split(":", 1)[1]))
    except ValueError:
        return None
