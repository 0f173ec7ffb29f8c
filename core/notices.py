"""Notice templates: WeChat category templates (and subscription notices) and SMS templates.

A notice is what a household is told when something it waits for happens (SPEC "Villager
dialogue", `NOTIFY_TEMPLATES`). Inside WeChat's 48-hour window it goes as the full text; outside
it, as a template whose fields WeChat fixes: each field's kind is read from its name's prefix
(`thing2` is a `thing`), and each kind takes only certain values (`thing` at most 20
characters, `phrase` at most 5, `amount` a number with 元, …), never a line break.

This module is pure: it reads and checks the files (`load_templates`, `load_sms_templates`;
one line naming what is wrong) and fits an event's variables to a template's fields (`fill`,
`sms_params`). Sending is bot/outbox/notice.py's.

File (YAML), one entry per event:

    claim_decided:
      template_id: Xb3-…            # the template's id in the account's template library
      via: template                 # or subscribe (message/subscribe/bizsend); default template
      fields: {character_string1: claim, name2: member, phrase3: result, amount4: amount,
               time5: date, thing6: [member, reason]}
      url: claims                   # the template's link: the household's claims page

A field takes one variable, or (a `thing` field) a list joined by "，"; the free-text
variables (`reason`, `next_step`, `result`) are what is shortened when the whole does not fit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import yaml

from core.money import format_yuan

EVENTS = ("payment_received", "payment_reminder", "claim_submitted", "claim_decided",
          "need_documents", "payout_listed", "payout_paid", "payout_failed", "appeal_decided")
VARIABLES = ("household", "claim", "member", "result", "amount", "date", "reason", "next_step")
#: variables that are shortened when a field is too small; the others are never cut
FREE_TEXT = frozenset({"reason", "next_step", "result"})

#: field kinds WeChat names by prefix, with the longest value each takes (characters)
KIND_LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "name": 10, "amount": 14,
               "time": 24, "date": 24, "number": 32, "letter": 32, "symbol": 5,
               "phone_number": 17, "car_number": 8}
#: kinds a variable can be written in (a claim number is no phrase, a name no amount)
FITS = {
    "household": {"thing", "character_string", "letter"},
    "claim": {"thing", "character_string", "letter"},
    "member": {"thing", "name"},
    "result": {"thing", "phrase"},
    "amount": {"thing", "amount", "number"},
    "date": {"thing", "time", "date"},
    "reason": {"thing"},
    "next_step": {"thing"},
}
_FIELD = re.compile(r"^(?P<kind>[a-z_]+?)(?P<n>\d+)$")
LINKS = ("claims",)
VIAS = ("template", "subscribe")
SMS_PARAM_MAX = 12  # SMS template parameters are kept short: providers cap each variable
SEPARATOR = "，"


class NoticeFileError(ValueError):
    """The notice-template file is wrong: the message is one line naming what."""


@dataclass(frozen=True)
class NoticeTemplate:
    event: str
    template_id: str
    fields: dict[str, tuple[str, ...]]  # field name -> variables
    via: str = "template"
    url: str | None = None


@dataclass(frozen=True)
class SmsTemplate:
    event: str
    template_id: str
    params: tuple[str, ...]


@dataclass
class Notices:
    """The account's templates per event (empty: none configured)."""
    wechat: dict[str, NoticeTemplate] = field(default_factory=dict)
    sms: dict[str, SmsTemplate] = field(default_factory=dict)


def field_kind(name: str) -> str | None:
    """`thing12` → `thing`; `character_string1` → `character_string`; None when unknown."""
    m = _FIELD.match(name or "")
    if not m:
        return None
    kind = m.group("kind").rstrip("_")
    return kind if kind in KIND_LIMITS else None


def _read(path: str | Path, what: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise NoticeFileError(f"{what}: no such file {str(path)!r}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise NoticeFileError(f"{what}: not a YAML file ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NoticeFileError(f"{what}: expected a map of events, e.g. claim_decided: {{…}}")
    return data


def _check_event(event, what: str) -> str:
    if event not in EVENTS:
        raise NoticeFileError(f"{what}: unknown event {event!r} (events: {', '.join(EVENTS)})")
    return event


def _check_variable(var, where: str) -> str:
    if var not in VARIABLES:
        raise NoticeFileError(f"{where}: unknown variable {var!r} "
                              f"(variables: {', '.join(VARIABLES)})")
    return var


def parse_templates(data: dict, what: str = "NOTIFY_TEMPLATES") -> dict[str, NoticeTemplate]:
    result = {}
    for event, entry in data.items():
        _check_event(event, what)
        where = f"{what}: {event}"
        if not isinstance(entry, dict):
            raise NoticeFileError(f"{where}: expected {{template_id, fields, url}}")
        unknown = set(entry) - {"template_id", "fields", "url", "via"}
        if unknown:
            raise NoticeFileError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                  "(keys: template_id, fields, url, via)")
        template_id = entry.get("template_id")
        if not isinstance(template_id, str) or not template_id.strip():
            raise NoticeFileError(f"{where}: template_id missing")
        via = entry.get("via", "template")
        if via not in VIAS:
            raise NoticeFileError(f"{where}: via must be template or subscribe, got {via!r}")
        url = entry.get("url")
        if url is not None and url not in LINKS:
            raise NoticeFileError(f"{where}: url must be {' or '.join(LINKS)}, got {url!r}")
        fields = entry.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise NoticeFileError(f"{where}: fields missing, e.g. {{thing1: member}}")
        parsed = {}
        for name, value in fields.items():
            fwhere = f"{where}: field {name}"
            kind = field_kind(str(name))
            if kind is None:
                raise NoticeFileError(f"{fwhere}: unknown field kind "
                                      f"(kinds: {', '.join(KIND_LIMITS)}, then a number)")
            names = tuple(value) if isinstance(value, list) else (value,)
            if not names:
                raise NoticeFileError(f"{fwhere}: no variable")
            for var in names:
                _check_variable(var, fwhere)
                if kind not in FITS[var]:
                    raise NoticeFileError(f"{fwhere}: a {kind} field cannot hold {var} "
                                          f"(it fits {', '.join(sorted(FITS[var]))})")
            if len(names) > 1 and kind != "thing":
                raise NoticeFileError(f"{fwhere}: only a thing field takes several variables")
            parsed[str(name)] = names
        result[event] = NoticeTemplate(event, template_id.strip(), parsed, via, url)
    return result


def parse_sms(data: dict, what: str = "SMS_TEMPLATES") -> dict[str, SmsTemplate]:
    result = {}
    for event, entry in data.items():
        _check_event(event, what)
        where = f"{what}: {event}"
        if not isinstance(entry, dict) or not str(entry.get("template_id") or "").strip():
            raise NoticeFileError(f"{where}: expected {{template_id, params: [variables]}}")
        unknown = set(entry) - {"template_id", "params"}
        if unknown:
            raise NoticeFileError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                  "(keys: template_id, params)")
        params = entry.get("params") or []
        if not isinstance(params, list):
            raise NoticeFileError(f"{where}: params must be a list of variables")
        for var in params:
            _check_variable(var, where)
        result[event] = SmsTemplate(event, str(entry["template_id"]).strip(), tuple(params))
    return result


def load_templates(path: str | Path) -> dict[str, NoticeTemplate]:
    return parse_templates(_read(path, "NOTIFY_TEMPLATES"))


def load_sms_templates(path: str | Path) -> dict[str, SmsTemplate]:
    return parse_sms(_read(path, "SMS_TEMPLATES"))


# -- fitting --------------------------------------------------------------------------------------

def one_line(text: str) -> str:
    """No line break, no run of spaces."""
    return re.sub(r"\s+", " ", str(text or "")).strip()


def shorten(text: str, limit: int) -> str:
    text = one_line(text)
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    return text[:limit - 1] + "…"


def render_variable(var: str, value, kind: str) -> str:
    """A variable written for a field kind: amounts in fen become `1234.56元` (WeChat's amount
    takes no thousands separator), dates `2026年3月1日`."""
    if value is None:
        return ""
    if var == "amount" and isinstance(value, int):
        text = format_yuan(value, unit=False).replace(",", "")
        return text if kind == "number" else f"{text}元"
    if isinstance(value, (date, datetime)):
        d = value.date() if isinstance(value, datetime) else value
        return f"{d.year}年{d.month}月{d.day}日"
    return one_line(value)


def fit(kind: str, parts: list[tuple[str, str]]) -> str:
    """One field's value from (variable, text) parts: whole when it fits; else the free text is
    shortened (its last part first), never the name, the amount or a number. Raises ValueError
    when even the fixed parts do not fit."""
    limit = KIND_LIMITS[kind]
    texts = [t for _, t in parts]
    joined = SEPARATOR.join(t for t in texts if t)
    if len(joined) <= limit:
        return joined
    free = [i for i, (var, t) in enumerate(parts) if var in FREE_TEXT and t]
    for i in reversed(free):
        others = SEPARATOR.join(t for j, t in enumerate(texts) if j != i and t)
        room = limit - len(others) - (len(SEPARATOR) if others else 0)
        if room >= 2:
            texts[i] = shorten(texts[i], room)
            return SEPARATOR.join(t for t in texts if t)
        texts[i] = ""
        joined = SEPARATOR.join(t for t in texts if t)
        if len(joined) <= limit:
            return joined
    raise ValueError(f"a {kind} field takes {limit} characters; "
                     f"{', '.join(v for v, _ in parts)} do not fit")


def fill(template: NoticeTemplate, variables: dict) -> dict[str, str]:
    """The template's data: {field: value}, each value fitted to its field's kind."""
    data = {}
    for name, names in template.fields.items():
        kind = field_kind(name)
        parts = [(var, render_variable(var, variables.get(var), kind)) for var in names]
        data[name] = fit(kind, parts) or EMPTY.get(kind, "-")
    return data


#: what an empty field holds (a rejected claim has no amount)
EMPTY = {"thing": "无", "phrase": "无", "name": "无", "amount": "0.00元", "number": "0"}


def sms_params(template: SmsTemplate, variables: dict) -> list[str]:
    """The SMS template's parameters, in order, each one line and short."""
    out = []
    for var in template.params:
        text = render_variable(var, variables.get(var), "thing")
        if var in FREE_TEXT:
            text = shorten(text, SMS_PARAM_MAX)
        out.append(text or "-")
    return out


# -- what WeChat refuses (the emulator checks the same) ------------------------------------------

_TIME = re.compile(r"^(\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2})?"
                   r"( ?\d{1,2}:\d{2}(:\d{2})?)?(~.*)?$")


def field_problem(name: str, value: str) -> str | None:
    """Why WeChat would refuse `value` in the field `name` (None: it takes it)."""
    kind = field_kind(name)
    if kind is None:
        return None
    value = str(value)
    if "\n" in value or "\r" in value:
        return "line break"
    if len(value) > KIND_LIMITS[kind]:
        return f"longer than {KIND_LIMITS[kind]}"
    if kind == "character_string" and not all(ord(c) < 128 for c in value):
        return "not letters, digits and symbols"
    if kind == "phrase" and not re.fullmatch(r"[\u4e00-\u9fff]{1,5}", value):
        return "not Chinese characters"
    if kind == "amount" and not re.fullmatch(r"[¥￥$]?\d{1,10}(\.\d{1,2})?元?", value):
        return "not an amount"
    if kind == "number" and not re.fullmatch(r"\d{1,32}(\.\d+)?", value):
        return "not a number"
    if kind == "letter" and not re.fullmatch(r"[A-Za-z]+", value):
        return "not letters"
    if kind in ("time", "date") and (not value or not _TIME.match(value)):
        return "not a date"
    return None


# -- the short words --------------------------------------------------------------------------

def words(which: str, key: str) -> str:
    """A notice's short word from templates/notice_words.yaml: which = result | next_step."""
    return _words().get(which, {}).get(key, "")


def _words() -> dict:
    global _WORDS
    if _WORDS is None:
        from core.config import TEMPLATES_DIR

        _WORDS = yaml.safe_load((TEMPLATES_DIR / "notice_words.yaml").read_text(encoding="utf-8"))
    return _WORDS


_WORDS: dict | None = None


def claim_variables(claim, result: str, next_step: str | None = None, **extra) -> dict:
    """The variables of a notice about a claim (member masked)."""
    from core.crypto import mask_name

    member = claim.member
    return {"household": claim.household.number if claim.household else None,
            "claim": claim.number, "member": mask_name(member.name) if member else None,
            "amount": claim.amount_fen, "result": words("result", result),
            "next_step": words("next_step", next_step or result), **extra}
