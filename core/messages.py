"""Reply and notification texts: Jinja2 templates under templates/messages/.

Filters follow the bot's conventions: money as `1,234.56 元`, dates as `2026年3月1日`.
"""
from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core.config import TEMPLATES_DIR
from core.money import format_yuan


def format_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    return f"{value.year}年{value.month}月{value.day}日"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Templates are read once per process (no file check on every reply): a changed template
    takes effect when the bot restarts."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                      autoescape=False, auto_reload=False)
    env.filters["yuan"] = format_yuan
    env.filters["cndate"] = format_date
    return env


@lru_cache(maxsize=1)
def page_environment() -> Environment:
    """Web pages (templates/pages/): the same filters, every value HTML-escaped."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, autoescape=True, auto_reload=False)
    env.filters["yuan"] = format_yuan
    env.filters["cndate"] = format_date
    return env


def render_page(template: str, /, **context) -> str:
    """Render templates/pages/<template>.html.j2 (HTML-escaped)."""
    return page_environment().get_template(f"pages/{template}.html.j2").render(**context)


_PLAIN = (str, int, bool, type(None))


def render(template: str, /, **context) -> str:
    """Render templates/messages/<template>.j2 and strip surrounding blank lines.

    A template is a function of what it is given (no clock, no globals): a text given only
    plain values (text, numbers, yes/no, nothing) — the menu, help, `取消` and most prompts —
    is rendered once and kept (bot/web's line renders one for nearly every message)."""
    if all(type(v) in _PLAIN for v in context.values()):
        # the type kept beside each value: 1 and True are equal keys, but print differently
        return _render_plain(template, tuple((k, type(v), v) for k, v in sorted(context.items())))
    return _render(template, context)


def _render(template: str, context: dict) -> str:
    return environment().get_template(f"messages/{template}.j2").render(**context).strip()


@lru_cache(maxsize=1024)
def _render_plain(template: str, items: tuple) -> str:
    return _render(template, {k: v for k, _type, v in items})


def cut_utf8(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes, cut between characters (for one line too long
    for a group-bot message)."""
    pieces, piece, size = [], [], 0
    for ch in text:
        n = len(ch.encode())
        if size + n > limit:
            pieces.append("".join(piece))
            piece, size = [], 0
        piece.append(ch)
        size += n
    return pieces + ["".join(piece)]
