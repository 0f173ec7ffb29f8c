"""Outbox deliverer `media.download` {document_id, media_id, openid}: a claim photo's MediaId is
fetched from WeChat within seconds of the message (WeChat keeps temporary media only 3 days),
checked and stored (core/media.py: DATA_DIR/media by SHA-256, size and type limits), hashed
(SHA-256, pHash), read (core/ocr.py: kind and the settlement sheet's read-out), and recorded on
the ClaimDocument and the claim (core.claims.document_stored: duplicate flags, and the "what is
still missing" push when the photo had no label).

The download and the OCR run with no transaction open; the results are written in one short
transaction. A file that is not an acceptable image, or is too large, is dropped and the sender
told why. A MediaId WeChat does not know (40007), or a download still failing at the outbox's
last attempt, drops the photo and asks the sender to send it again.
"""
from __future__ import annotations

import logging
import time

from bot.outbox.deliver import Context, RetryableError, deliverer
from bot.clients.wechat import WeChatClientException
from core import claims, media, ocr
from core.models import ClaimDocument, OutboxMessage

log = logging.getLogger("huzhu.media")

UNKNOWN_MEDIA = {40007}  # invalid media_id: expired (3 days) or never existed


@deliverer("media.download")
def download(ctx: Context, row: OutboxMessage) -> None:
    payload = row.payload or {}
    document_id = payload.get("document_id")
    media_id = payload.get("media_id")
    openid = payload.get("openid")
    with ctx.db.session() as s:
        doc = s.get(ClaimDocument, document_id) if document_id else None
        if doc is None or doc.sha256 is not None:
            return None  # dropped meanwhile, or done by an earlier attempt
    if not media_id:
        _discard(ctx, document_id, "lost", openid)
        return None
    started = time.perf_counter()
    try:
        data, _declared = ctx.wechat.download_media(media_id)
    except WeChatClientException as exc:
        if exc.errcode in UNKNOWN_MEDIA or row.attempts + 1 >= ctx.cfg.OUTBOX_MAX_ATTEMPTS:
            log.warning("media %s… lost: %s", media_id[:12], exc.errcode)
            _discard(ctx, document_id, "lost", openid)
            return None
        raise RetryableError(f"download failed: {exc.errcode} {exc.errmsg}") from exc
    except Exception:
        if row.attempts + 1 >= ctx.cfg.OUTBOX_MAX_ATTEMPTS:
            _discard(ctx, document_id, "lost", openid)
            return None
        raise
    downloaded = time.perf_counter()
    result = process(ctx, document_id, data, openid)
    log.info("media document=%s %s download_ms=%.0f process_ms=%.0f", document_id, result,
             (downloaded - started) * 1000, (time.perf_counter() - downloaded) * 1000)
    return None


def process(ctx: Context, document_id: int, data: bytes, openid: str | None) -> str:
    """Store, hash, OCR and record one photo's bytes; returns what happened."""
    try:
        stored = media.store(ctx.cfg.data_dir, data)
    except media.MediaRefused as exc:
        log.info("media document=%s refused: %s", document_id, exc)
        _discard(ctx, document_id, exc.reason, openid)
        return f"refused:{exc.reason}"
    reading = ocr.read_photo(stored.sha256, stored.image)
    guess = ocr.classify(reading)
    fields = ocr.read_settlement(reading) if reading is not None else {}
    with ctx.db.session() as s:
        return claims.document_stored(
            s, document_id, sha256=stored.sha256, phash=stored.phash, size=stored.size,
            content_type=stored.content_type,
            ocr_text=reading.text if reading is not None else None,
            guess_kind=guess.kind, guess_confidence=guess.confidence,
            fields={k: f.to_json() for k, f in fields.items()},
            ocr_seconds=reading.seconds if reading is not None else None, actor=openid)


def _discard(ctx: Context, document_id: int, reason: str, openid: str | None) -> None:
    with ctx.db.session() as s:
        claims.discard_document(s, document_id, reason, openid)
