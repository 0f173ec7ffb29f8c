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


def format_yuan(fen: int | None, unit: bool = True) -> str:
    """123456 -> '1,234.56 元'."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    text = f"{sign}{fen // 100:,}.{fen % 100:02d}"
    return f"{text} 元" if unit else text


def round_half_up(value: Decimal) -> int:
    try:
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:
        raise ValueError(str(exc)) from exc


def mul_rate(fen: int, rate: str | Decimal) -> int:
    """fen × rate, rounded half up to the fen."""
    return round_half_up(Decimal(fen) * Decimal(str(rate)))
