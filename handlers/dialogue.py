"""Dialogues as declared state tables (the ConversationHandler idea), persisted per openid.

A Dialogue names its entry words and menu key, an entry handler, and a table of states to
handlers. Each handler returns a Step: the replies, the next state (END to finish) and the data
to keep. The state is stored in `dialogue_state`, so a dialogue picks up where it stopped in
whichever process handles the next message; after 30 idle minutes it ends by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from core.models import DialogueState, utcnow
from core.outbox import as_utc
from handlers import menu
from handlers.types import Ctx, Incoming, Reply

END = None
TIMEOUT = timedelta(minutes=30)


@dataclass
class Step:
    replies: list[Reply]
    state: str | None = END
    data: dict = field(default_factory=dict)
    # not answered here: the message goes its way as if no dialogue were open (`pass_on`)
    passed: bool = False


def pass_on(state: str | None = END, data: dict | None = None) -> Step:
    """Let the message be handled as if no dialogue were open; the dialogue ends, or stays in
    `state` unless what handles the message starts another."""
    return Step([], state, data or {}, passed=True)


def say(*texts: str, state: str | None = END, data: dict | None = None) -> Step:
    return Step([Reply(text=t) for t in texts], state, data or {})


Handler = Callable[[Ctx, Incoming, dict], Step]


@dataclass
class Dialogue:
    """A declared dialogue. Its menu number, word and key come from handlers/menu.py when its
    name is a menu entry; `words` adds other entry words (银行卡, 绑定家人 …)."""
    name: str
    entry: Handler
    states: dict[str, Handler]
    words: tuple[str, ...] = ()
    timeout: timedelta = TIMEOUT
    # tried, in order, before the state's handler; the first that returns a Step wins
    fallbacks: tuple[Handler, ...] = ()
    # its entry calls a service outside (WeChat Pay): the webhook handles the message that
    # starts it beside the batch of other villagers' messages, so a slow answer out there holds
    # up no one else
    calls_out: bool = False
    # asked, outside any dialogue, about a message nothing else understands: a Step (the
    # dialogue opens in its state) or None (the menu's "not understood" answer)
    catch: Handler | None = None


REGISTRY: dict[str, Dialogue] = {}


def register(dialogue: Dialogue) -> Dialogue:
    REGISTRY[dialogue.name] = dialogue
    return dialogue


def find_entry(text: str, include_numbers: bool = True) -> Dialogue | None:
    """The dialogue a text starts: a menu number (outside dialogues), word or key, or one of a
    dialogue's own entry words. A word that matches `words` with arguments (绑定 123456) counts."""
    item = menu.find(text)
    if item is not None and (include_numbers or text != item.number):
        return REGISTRY.get(item.dialogue)
    return find_word(text)


def find_word(text: str) -> Dialogue | None:
    """The dialogue one of whose own entry words the text is, or begins with (绑定 123456)."""
    first = text.split(maxsplit=1)[0] if text else ""
    for d in REGISTRY.values():
        if text in d.words or first in d.words:
            return d
    return None


def _row(ctx: Ctx) -> DialogueState | None:
    """The user's dialogue state row as this message knows it: read once and kept up to date
    by the functions below, which are the only ones that change it — so a user the webhook
    already knows to be outside any dialogue (`ctx.in_dialogue` False) costs no look-up."""
    if ctx.in_dialogue is None or (ctx.in_dialogue and ctx.dialogue_row is None):
        ctx.dialogue_row = ctx.session.get(DialogueState, ctx.openid)
        ctx.in_dialogue = ctx.dialogue_row is not None
    return ctx.dialogue_row


def _set_row(ctx: Ctx, row: DialogueState | None) -> None:
    ctx.dialogue_row = row
    ctx.in_dialogue = row is not None


def open_dialogue(session, openid: str) -> str | None:
    """The name of the user's open dialogue (not timed out), read without changing anything:
    for the webhook's choice of line before the message's transaction."""
    row = session.get(DialogueState, openid)
    if row is None:
        return None
    found = REGISTRY.get(row.dialogue)
    if found is None or utcnow() - as_utc(row.updated_at) > found.timeout:
        return None
    return row.dialogue


def load_state(ctx: Ctx) -> tuple[DialogueState | None, bool]:
    """The user's dialogue state and whether it had timed out (then it is deleted)."""
    row = _row(ctx)
    if row is None:
        return None, False
    dialogue = REGISTRY.get(row.dialogue)
    timeout = dialogue.timeout if dialogue else TIMEOUT
    if dialogue is None or utcnow() - as_utc(row.updated_at) > timeout:
        ctx.session.delete(row)
        ctx.session.flush()
        _set_row(ctx, None)
        return None, True
    return row, False


def clear_state(ctx: Ctx) -> bool:
    row = _row(ctx)
    if row is None:
        return False
    ctx.session.delete(row)
    ctx.session.flush()
    _set_row(ctx, None)
    return True


def _save(ctx: Ctx, dialogue: Dialogue, step: Step, row: DialogueState | None) -> None:
    if step.state is END:
        if row is not None:
            ctx.session.delete(row)
            _set_row(ctx, None)
        return
    if step.state not in dialogue.states:
        raise KeyError(f"dialogue {dialogue.name} has no state {step.state}")
    if row is None:
        row = DialogueState(openid=ctx.openid, dialogue=dialogue.name)
        ctx.session.add(row)
        _set_row(ctx, row)
    row.dialogue = dialogue.name
    row.state = step.state
    row.data = dict(step.data)
    row.updated_at = utcnow()


def start(ctx: Ctx, dialogue: Dialogue, msg: Incoming, data: dict | None = None) -> list[Reply]:
    row = _row(ctx)
    step = dialogue.entry(ctx, msg, dict(data or {}))
    _save(ctx, dialogue, step, row)
    return step.replies


def catch(ctx: Ctx, msg: Incoming) -> list[Reply] | None:
    """The replies of the first dialogue whose `catch` takes a message nothing else
    understood (the reply a rejection message asked for: core.appeals), or None."""
    for dialogue in REGISTRY.values():
        if dialogue.catch is None:
            continue
        step = dialogue.catch(ctx, msg, {})
        if step is not None:
            _save(ctx, dialogue, step, _row(ctx))
            return step.replies
    return None


def advance(ctx: Ctx, row: DialogueState, msg: Incoming) -> list[Reply] | None:
    """The replies of the open dialogue's state to the message; None when the state passed it
    on (`pass_on`: the dialogue has ended, the caller handles the message without it)."""
    dialogue = REGISTRY[row.dialogue]
    data = dict(row.data or {})
    for fallback in dialogue.fallbacks:
        step = fallback(ctx, msg, data)
        if step is not None:
            break
    else:
        step = dialogue.states[row.state](ctx, msg, data)
    _save(ctx, dialogue, step, row)
    return None if step.passed else step.replies
