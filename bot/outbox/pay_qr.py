"""Outbox deliverer `pay.qr` {openid, out_trade_no, code_url}: the payment dialogue's WeChat Pay
Native code, drawn here with `qrcode` as a PNG under DATA_DIR/pay/qr (once per code_url),
uploaded as media and sent to the payer as an image. The page behind the text's link
(bot/web/pay_notify.py `/pay/qr/…`) shows the same PNG.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import qrcode

from bot.outbox.deliver import Context, PermanentError, deliverer, send_message
from core.models import OutboxMessage


def qr_png(data_dir: Path, code_url: str, name: str) -> Path:
    """The code_url as a PNG under DATA_DIR/pay/qr (made once per code_url)."""
    digest = hashlib.sha256(code_url.encode()).hexdigest()[:10]
    path = data_dir / "pay" / "qr" / f"{name}-{digest}.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        img = qrcode.make(code_url, box_size=8, border=4)
        tmp = path.with_suffix(".tmp")
        img.save(tmp, format="PNG")
        tmp.replace(path)
    return path


@deliverer("pay.qr")
def send_code(ctx: Context, row: OutboxMessage) -> str | None:
    payload = row.payload or {}
    try:
        png = qr_png(ctx.cfg.data_dir, payload["code_url"], payload["out_trade_no"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"bad pay.qr payload: {exc!r}") from exc
    return send_message(ctx, payload.get("openid"), {"type": "image", "path": str(png)})
