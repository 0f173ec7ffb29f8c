"""Money: integer fen in code and database; yuan with two decimals in config and display."""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_YUAN_RE = re.compile(r"^\s*(\d{1,12})(?:\.(\d{1,2}))?\s*(?:元)?\s*$")


def parse_yuan(text: str | int | Decimal) -> int:
    """'1,234.5' / '1234.50元' / 80 -> fen. Raises ValueError on anything else (no floats)."""
    if isinstance(text, bool):
        raise ValueError("not an amount")
    if isinstance(text, int):
        return text * 100
    if isinstance(text, Decimal):
        fen = text * 100
        if fen != fen.to_integral_value():
            raise ValueError("at most two decimals")
        return int(fen)
    if isinstance(text, float):
        raise ValueError("amounts are written as text, not floats")
    m = _YUAN_RE.match(str(text).replace(",", "").replace("，", ""))
    if not m:
        raise ValueError(f"not an amount in yuan: {text!r}")
    whole, frac = m.group(1), (m.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(frac)


_CENTS = tuple(f".{cents:02d}" for cents in range(100))  # ".00" … ".99"
_THOUSANDS = tuple(f",{group:03d}" for group in range(1000))  # ",000" … ",999"


def format_yuan(fen: int | None, unit: bool = True) -> str:
    """123456 -> '1,234.56 元'; -5 -> '-0.05 元'; unit=False: '1,234.56'. The groups of three
    digits and the fen come from tables (about twice as fast as format spec ',')."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    text = _CENTS[cents]
    while yuan >= 1000:
        yuan, group = divmod(yuan, 1000)
        text = _THOUSANDS[group] + text
    text = f"{sign}{yuan}{text}"
    return f"{text} 元" if unit else text


def round_half_up(value: Decimal) -> int:
    try:
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:
        raise ValueError(str(exc)) from exc


def mul_rate(fen: int, rate: str | Decimal) -> int:
    """fen × rate, rounded half up to the fen."""
    return round_half_up(Decimal(fen) * Decimal(str(rate)))
