"""The `notice` deliverer: one notice to one household (core/notify.py), tried in this order —

1. a customer-service message with the full text, to each linked WeChat user whose 48-hour
   window is open;
2. for the others, the event's category template (or subscription notice) of NOTIFY_TEMPLATES,
   its fields fitted by core/notices.py, its link the household's claims page;
3. when no WeChat user was told: one SMS (SMS_PROVIDER, SMS_TEMPLATES) to the household's
   phone — at once for a household with no WeChat user linked, else once the notice has waited
   24 hours; at most one per notice (marked "sending" before the call, never tried twice).

A refusal (40037 unknown template, 47003 invalid field, 43101 not subscribed, an SMS
provider's error) moves on to the next channel; it is logged with the notice's id and event
(no personal data) and kept in the row (payload["errors"], last_error), where `huzhu outbox
list` and `/待通知` show it. Progress (who was told, the SMS) is saved as it happens, so a retry
never tells anyone twice. The channel(s) that told the household are stored on the row.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta

from bot.clients.wechat import WeChatClientException
from bot.outbox.deliver import (HELD, Context, Hold, PermanentError, RetryableError,
                                deliverer)
from core.config import secret_key
from core.crypto import PersonalDataVault
from core.household_links import claims_url
from core.models import Household, OutboxMessage, utcnow
from core.notices import fill, sms_params
from core.outbox import as_utc

log = logging.getLogger("huzhu.notice")

SMS_AFTER = timedelta(hours=24)
#: WeChat answers after which the next channel is tried (not retried)
NEXT_CHANNEL = {40003, 40037, 43004, 43101, 47001, 47003}
#: refusals the same template would get again: not tried again for this notice
REFUSED_FOR_GOOD = {"40037", "47001", "47003", "fit"}


def _variables(ctx: Context, row: OutboxMessage) -> dict:
    variables = dict(row.payload.get("variables") or {})
    value = variables.get("date")
    if isinstance(value, str):
        try:
            variables["date"] = date.fromisoformat(value[:10])
        except ValueError:
            variables["date"] = None
    if not variables.get("date"):
        variables["date"] = as_utc(row.created_at).astimezone(ctx.cfg.tz).date()
    return variables


def _save(ctx: Context, row: OutboxMessage, **payload) -> None:
    row.payload = {**row.payload, **payload}
    channel = _channel(row.payload)
    with ctx.db.session() as s:
        stored = s.get(OutboxMessage, row.id)
        if stored is not None:
            stored.payload = {**stored.payload, **payload}
            stored.channel = channel
            errors = row.payload.get("errors") or []
            if errors:
                stored.last_error = "; ".join(f"{e['channel']} {e['code']}"
                                              for e in errors[-5:])[:2000]


def _channel(payload: dict) -> str | None:
    used = set((payload.get("done") or {}).values())
    if payload.get("sms") == "sent":
        used.add("sms")
    order = ["custom", "template", "subscribe", "sms"]
    return "+".join(c for c in order if c in used)[:16] or None


def _refused(ctx: Context, row: OutboxMessage, channel: str, code, errors: list) -> None:
    event = row.payload.get("event")
    log.warning("notice id=%s event=%s: %s refused (%s), next channel", row.id, event, channel,
                code)
    errors.append({"channel": channel, "code": str(code), "event": event,
                   "at": utcnow().isoformat(timespec="seconds")})


@deliverer("notice")
def deliver_notice(ctx: Context, row: OutboxMessage):
    p = row.payload
    try:
        event, text, openids = p["event"], p["text"], list(p.get("openids") or [])
    except (KeyError, TypeError) as exc:
        raise PermanentError(f"bad notice payload: {exc!r}") from exc
    done: dict = dict(p.get("done") or {})
    errors: list = list(p.get("errors") or [])
    refused: list = list(p.get("refused") or [])
    template = ctx.notices.wechat.get(event)
    variables = _variables(ctx, row)
    wechat = ctx.wechat if openids else None
    for openid in openids:
        if openid in done:
            continue
        how = None
        try:
            if wechat.push_custom(openid, {"type": "text", "content": text}):
                how = "custom"
        except WeChatClientException as exc:
            if exc.errcode is None:
                raise RetryableError("WeChat HTTP error") from exc
            if exc.errcode not in NEXT_CHANNEL:
                raise RetryableError(f"WeChat {exc.errcode}") from exc
            _refused(ctx, row, "custom", exc.errcode, errors)
        if how is None and template is not None and openid not in refused:
            how = _templated(ctx, row, wechat, openid, template, variables, errors)
            if how is None and errors and errors[-1]["code"] in REFUSED_FOR_GOOD:
                refused.append(openid)  # the same fields would be refused again
                _save(ctx, row, refused=refused, errors=errors)
        if how is not None:
            done[openid] = how
            _save(ctx, row, done=done, errors=errors)
        elif errors != (p.get("errors") or []):
            _save(ctx, row, errors=errors)
    if done:
        return None
    return _sms_or_wait(ctx, row, event, variables, errors, bool(openids))


def _templated(ctx: Context, row, wechat, openid: str, template, variables: dict,
               errors: list) -> str | None:
    try:
        data = fill(template, variables)
    except ValueError as exc:
        _refused(ctx, row, template.via, "fit", errors)
        log.warning("notice id=%s event=%s: %s", row.id, template.event, exc)
        return None
    url = claims_url(ctx.cfg, row.payload["household_id"]) if template.url else None
    try:
        if template.via == "subscribe":
            wechat.send_subscribe(openid, template.template_id, data, page=url)
        else:
            wechat.send_template(openid, template.template_id, data, url=url)
    except WeChatClientException as exc:
        if exc.errcode is None:
            raise RetryableError("WeChat HTTP error") from exc
        if exc.errcode not in NEXT_CHANNEL:
            raise RetryableError(f"WeChat {exc.errcode}") from exc
        _refused(ctx, row, template.via, exc.errcode, errors)
        return None
    return template.via


def _phone(ctx: Context, household_id: int) -> str | None:
    with ctx.db.session() as s:
        household = s.get(Household, household_id)
        enc = household.phone_enc if household is not None else None
    if not enc:
        return None
    return PersonalDataVault(secret_key(ctx.cfg)).decrypt(enc)


def _sms_or_wait(ctx: Context, row: OutboxMessage, event: str, variables: dict, errors: list,
                 has_users: bool):
    p = row.payload
    sms_template = ctx.notices.sms.get(event)
    provider = ctx.sms if sms_template is not None else None
    phone = _phone(ctx, p["household_id"]) if provider is not None and not p.get("sms") else None
    if phone:
        due = as_utc(row.created_at) + SMS_AFTER
        if has_users and utcnow() < due:
            return Hold(due)  # the WeChat users may still write within the day
        _save(ctx, row, sms="sending", errors=errors)  # at most one SMS, even if we die now
        try:
            provider.send(phone, sms_template.template_id, sms_params(sms_template, variables))
        except Exception as exc:  # the provider's refusal, or the network
            code = getattr(exc, "code", type(exc).__name__)
            _refused(ctx, row, "sms", code, errors)
            _save(ctx, row, sms="failed", errors=errors)
        else:
            _save(ctx, row, sms="sent", errors=errors)
            return None
    if has_users:
        return HELD  # told when a user writes again (the worker holds the row)
    raise PermanentError("notice: no WeChat user linked and no SMS sent"
                         + (f" ({errors[-1]['channel']} {errors[-1]['code']})" if errors else ""))
