"""Relatives as proxies (many villagers are elderly; their children work in town).

- `绑定家人 [称呼]` — the head gets a 6-digit code valid 24 hours (asked for what they call the
  relative first, unless given: 绑定家人 儿子小明);
- `绑定 <code>` — the relative becomes a proxy: may pay, claim and query for the household; the
  head is told;
- `家人` — the head lists the proxies (a proxy: the households they act for);
- `解绑 N` — the head removes proxy N (a proxy: stops acting for household N); the other side is
  told.
"""
from __future__ import annotations

from sqlalchemy import select

from core.households import (LABEL_MAX, PROXY_CODE_TTL, HouseholdError, audit_bind_refusal,
                             bind_proxy, create_proxy_code, headed_household, leave_as_proxy,
                             proxies, remove_proxy)
from core.messages import render
from core.models import Household, HouseholdLink, LinkRole
from core.outbox import as_utc, send_text
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming


def _say(template: str, state: str | None = None, data: dict | None = None, **context) -> Step:
    return say(render(template, **context), state=state, data=data)


def _args(msg: Incoming) -> str:
    parts = msg.text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


# -- 绑定家人 ---------------------------------------------------------------------------------

def code_entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    hh = headed_household(ctx.session, ctx.openid)
    if hh is None:
        return _say("proxy_not_head", proxy_of=_proxy_households(ctx))
    label = _args(msg)
    if label:
        return _issue(ctx, hh, label)
    return _say("proxy_ask_label", state="label", data={"household_id": hh.id})


def _good_label(text: str) -> str | None:
    text = " ".join(text.split())
    if not 1 <= len(text) <= LABEL_MAX or text.isdigit():
        return None
    return text


def label(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    text = _good_label(msg.text) if msg.kind != "image" else None
    if text is None:
        return _say("proxy_ask_label", state="label", data=data, bad=True, limit=LABEL_MAX)
    hh = ctx.session.get_one(Household, data["household_id"])
    return _issue(ctx, hh, text)


def _issue(ctx: Ctx, hh: Household, label_text: str) -> Step:
    label_text = _good_label(label_text)
    if label_text is None:
        return _say("proxy_ask_label", state="label", data={"household_id": hh.id}, bad=True,
                    limit=LABEL_MAX)
    row = create_proxy_code(ctx.session, hh, ctx.openid, label_text, ctx.now)
    return _say("proxy_code", code=row.code, label=label_text, household=hh.number,
                hours=int(PROXY_CODE_TTL.total_seconds() // 3600),
                until=row.expires_at.astimezone(ctx.cfg.tz))


register(Dialogue("proxy_code", code_entry, {"label": label}, words=("绑定家人",)))


# -- 绑定 <code> ------------------------------------------------------------------------------

def bind_entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    code = _args(msg).replace(" ", "")
    if not code:
        return _say("proxy_ask_code", state="code")
    return _bind(ctx, code)


def code_state(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    text = msg.text.strip()
    if text.startswith("绑定"):
        text = text[2:].strip()
    if not (len(text) == 6 and text.isdigit()):
        return _say("proxy_ask_code", state="code", bad=True)
    return _bind(ctx, text)


def _bind(ctx: Ctx, code: str) -> Step:
    from core.crypto import scrub

    try:
        link = bind_proxy(ctx.session, ctx.openid, code, ctx.now)
    except HouseholdError as e:
        audit_bind_refusal(ctx.session, ctx.openid, e)
        return _say("proxy_bind_refused", code=e.code, household=e.details.get("household"),
                    text=scrub(code)[:8])
    return _say("proxy_bound", household=link.household.number,
                village=link.household.village.full_name)


register(Dialogue("proxy_bind", bind_entry, {"code": code_state}, words=("绑定",)))


# -- 家人 / 解绑 N ----------------------------------------------------------------------------

def _proxy_households(ctx: Ctx) -> list[Household]:
    return list(ctx.session.scalars(
        select(Household).join(HouseholdLink, HouseholdLink.household_id == Household.id)
        .where(HouseholdLink.openid == ctx.openid, HouseholdLink.role == LinkRole.proxy)
        .order_by(HouseholdLink.id)))


def family_entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    word = msg.text.split(maxsplit=1)[0]
    arg = _args(msg)
    hh = headed_household(ctx.session, ctx.openid)
    if word == "解绑":
        if not arg:
            return _list(ctx, hh, hint=True)
        if not arg.isdigit():
            return _list(ctx, hh, bad=arg[:10])
        return _remove(ctx, hh, int(arg))
    return _list(ctx, hh)


def _views(ctx: Ctx, hh: Household) -> list[dict]:
    return [{"index": p.index, "label": p.label or "（未写称呼）",
             "since": as_utc(p.since).astimezone(ctx.cfg.tz).date()}
            for p in proxies(ctx.session, hh)]


def _list(ctx: Ctx, hh: Household | None, hint: bool = False, bad: str | None = None) -> Step:
    if hh is not None:
        return _say("proxy_list", household=hh.number, proxies=_views(ctx, hh), hint=hint,
                    bad=bad)
    return _say("proxy_list_as_proxy", households=_proxy_households(ctx), hint=hint, bad=bad)


def _remove(ctx: Ctx, hh: Household | None, n: int) -> Step:
    if hh is not None:
        try:
            view = remove_proxy(ctx.session, hh, n, actor=ctx.openid)
        except HouseholdError:
            return _say("proxy_list", household=hh.number, proxies=_views(ctx, hh),
                        hint=False, bad=str(n))
        return _say("proxy_removed", label=view.label, household=hh.number,
                    left=len(proxies(ctx.session, hh)))
    households = _proxy_households(ctx)
    if not 1 <= n <= len(households):
        return _say("proxy_list_as_proxy", households=households, hint=False, bad=str(n))
    target = households[n - 1]
    leave_as_proxy(ctx.session, ctx.openid, target)
    for head in ctx.session.scalars(select(HouseholdLink).where(
            HouseholdLink.household_id == target.id, HouseholdLink.role == LinkRole.head)):
        send_text(ctx.session, head.openid, render("proxy_left_head", household=target.number))
    return _say("proxy_left", household=target.number)


register(Dialogue("family", family_entry, {}, words=("家人", "解绑")))
