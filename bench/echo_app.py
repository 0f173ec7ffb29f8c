"""The baseline for bench/webhook.py: a bare Flask + wechatpy app that checks the signature,
decrypts in safe mode, parses the message and echoes it as a passive text reply — no database.

    python bench/echo_app.py PORT TOKEN APP_ID [AES_KEY]
"""
from __future__ import annotations

import logging
import sys

from flask import Flask, Response, request
from waitress import serve
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature


def create(token: str, app_id: str, aes_key: str = "") -> Flask:
    app = Flask("echo")
    crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None

    @app.post("/wechat")
    def wechat():
        a = request.args
        check_signature(token, a["signature"], a["timestamp"], a["nonce"])
        body = request.get_data()
        if crypto is not None:
            body = crypto.decrypt_message(body, a["msg_signature"], a["timestamp"], a["nonce"])
        msg = parse_message(body)
        xml = TextReply(content=getattr(msg, "content", "") or "ok", message=msg).render()
        if crypto is not None:
            xml = crypto.encrypt_message(xml, a["nonce"], a["timestamp"])
        return Response(xml, mimetype="application/xml")

    return app


if __name__ == "__main__":
    port, token, app_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    aes = sys.argv[4] if len(sys.argv) > 4 else ""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" under load
    serve(create(token, app_id, aes), host="127.0.0.1", port=port, threads=16,
          connection_limit=256, _quiet=True)
