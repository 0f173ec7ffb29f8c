"""Hostile bodies against the webhook, generated (hypothesis): 20,000 of them through the WSGI
app in-process — XML-ish messages with huge and odd numbers, bad encodings, missing and
repeated fields, nested elements, entities and DTDs, cut and flipped bytes. Signed ones may be
handled (a well-formed message is a message) but never get a server error; unsigned ones get
403 and change nothing at all."""
from __future__ import annotations

import io
import itertools
import time
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import text

from bot.devtools.chat import sign
from bot.web.wxml import parse_flat
from core.models import Base

BODIES_PER_EXAMPLE = 20

TAGS = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
        "EventKey", "MediaId", "PicUrl", "Recognition", "Format", "Encrypt", "xml", "a"]
VALUES = ["", "o_fuzz", "o_fuzz2", "text", "TEXT", "event", "image", "voice", "location",
          "subscribe", "SCAN", "unsubscribe", "CLICK", "MENU_HELP", "qrscene_village:1",
          "qrscene_village:x", "village:99999999999999999999", "帮助", "0", "1", "参加互助",
          "/绑定 123", "/", "取消", "计数", "1700000000", "99999999999999999999", "-1", "1e9",
          "²", "١٢٣", "１７００００００００", "0x10", "NaN", "9" * 400, "a" * 70, "o" * 65,
          "帮\u200b助", "\ufeff帮助", "\u202e0", "]]>", "<![CDATA[x]]>", "&amp;", "&lt;xml&gt;",
          "&#0;", "&#xD800;", "&#x1F600;", "&lol;", "\x01", "\U0001F600" * 50, "\ud800"]
PROLOGUES = ["", '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0"?>',
             '<?xml version="1.0" encoding="gbk"?>', '<?xml version="1.0" encoding="bogus"?>',
             '<?xml version="1.0" encoding="utf-16"?>', "\ufeff",
             '<!DOCTYPE xml [<!ENTITY lol "lol">]>',
             '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
             '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd">', "<!-- c -->", "<?pi x?>"]
ENCODINGS = ["utf-8", "utf-16", "gbk", "latin-1", "utf-32"]


def render_field(tag: str, value: str, how: int) -> str:
    if how == 0:
        return f"<{tag}>{value}</{tag}>"
    if how == 1:
        return f"<{tag}><![CDATA[{value}]]></{tag}>"
    if how == 2:  # nested elements
        return f"<{tag}><{tag}>{value}</{tag}><b/></{tag}>"
    if how == 3:  # attributes, an empty element
        return f'<{tag} a="{value}"/>'
    if how == 4:  # an entity in the text
        return f"<{tag}>&lol;{value}&xxe;</{tag}>"
    return f"<{tag}>{value}"  # unclosed


# one body: a prologue, a root, fields (tag, value, how), then how its bytes are spoiled
fields = st.lists(st.tuples(st.sampled_from(TAGS),
                            st.sampled_from(VALUES) | st.text(max_size=12),
                            st.integers(0, 12)), max_size=8)
body = st.tuples(st.sampled_from(PROLOGUES), st.sampled_from(["xml", "xml", "xml", "XML", "x"]),
                 fields, st.sampled_from(ENCODINGS), st.integers(0, 40), st.integers(0, 2**16))


def to_bytes(spec) -> bytes:
    prologue, root, fs, encoding, spoil, where = spec
    inner = "".join(render_field(t, v, how if how < 6 else 0) for t, v, how in fs)
    if not any(t == "MsgType" for t, _, _ in fs) and spoil % 3 == 0:
        # most often a complete message, so that the handlers are reached too
        inner = ("<FromUserName>o_fuzz</FromUserName><CreateTime>1700000000</CreateTime>"
                 "<MsgType>text</MsgType>" + inner)
    data = f"{prologue}<{root}>{inner}</{root}>".encode(encoding, "replace")
    if spoil == 1 and data:  # cut short
        data = data[:where % len(data)]
    elif spoil == 2 and data:  # one byte flipped
        i = where % len(data)
        data = data[:i] + bytes([data[i] ^ 0x80]) + data[i + 1:]
    elif spoil == 3:
        data = data + b"\xff\xfe\x00"
    return data


@pytest.fixture
def wsgi(app_ctx):
    from bot.web.app import create_app

    app = create_app(app_ctx)
    yield app
    app.extensions["huzhu.webhook"].close()


def call(app, token: str, data: bytes, signed: bool, nonces) -> int:
    ts = str(int(time.time()))
    nonce = f"f{next(nonces)}"
    query = {"timestamp": ts, "nonce": nonce,
             "signature": sign(token, ts, nonce) if signed else "0" * 40}
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/wechat", "SCRIPT_NAME": "",
           "QUERY_STRING": urlencode(query), "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
           "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(data)),
           "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http"}
    status = []
    out = b"".join(app.wsgi_app(env, lambda s, h: status.append(s)))
    code = int(status[0].split()[0])
    if code in (400, 403):
        assert out in (b"bad request", b"forbidden")
    if code == 200 and out not in (b"success",):
        parse_flat(out)  # a reply WeChat can read
    return code


def fingerprint(db) -> dict:
    """Every table's rows (a count, and a digest of the content)."""
    out = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(text(f'SELECT * FROM "{table.name}"')).fetchall()
            out[table.name] = sorted(map(repr, rows))
    return out


def test_signed_hostile_bodies_never_get_a_server_error(wsgi, cfg, db):
    """12,000 signed bodies: 400, 403 or an answer — never a 5xx."""
    nonces = itertools.count()
    seen: dict[int, int] = {}

    @settings(max_examples=600, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(body, min_size=BODIES_PER_EXAMPLE, max_size=BODIES_PER_EXAMPLE))
    def run(specs):
        for spec in specs:
            code = call(wsgi, cfg.WECHAT_TOKEN, to_bytes(spec), True, nonces)
            seen[code] = seen.get(code, 0) + 1
            assert code < 500, spec

    run()
    assert sum(seen.values()) == 600 * BODIES_PER_EXAMPLE
    assert seen.get(200, 0) > 300 and seen.get(400, 0) > 2000  # both paths were exercised


def test_signed_hostile_bodies_in_safe_mode_never_get_a_server_error(tmp_path, db, db_url,
                                                                     emulator):
    """3,000 bodies to a safe-mode webhook: half encrypted as WeChat does (the hostile XML
    inside), half sent as they are (no or a garbage Encrypt)."""
    from wechatpy.crypto import WeChatCrypto

    from bot.server import bootstrap
    from bot.web.app import AppContext, create_app
    from tests.conftest import AES_KEY, make_cfg

    cfg = make_cfg(tmp_path, db_url, emulator, WECHAT_AES_KEY=AES_KEY)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    app = create_app(x)
    crypto = WeChatCrypto(cfg.WECHAT_TOKEN, AES_KEY, cfg.WECHAT_APP_ID)
    n = itertools.count()

    def post(data: bytes, encrypt: bool) -> int:
        ts, nonce = str(int(time.time())), f"s{next(n)}"
        query = {"timestamp": ts, "nonce": nonce, "signature": sign(cfg.WECHAT_TOKEN, ts, nonce),
                 "encrypt_type": "aes", "msg_signature": "0" * 40}
        if encrypt:
            enc = parse_flat(crypto.encrypt_message(data.decode("utf-8", "replace"), nonce,
                                                    ts).encode())
            query["msg_signature"] = enc["MsgSignature"]
            data = f"<xml><Encrypt>{enc['Encrypt']}</Encrypt></xml>".encode()
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/wechat", "SCRIPT_NAME": "",
               "QUERY_STRING": urlencode(query), "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data),
               "wsgi.url_scheme": "http"}
        status = []
        b"".join(app.wsgi_app(env, lambda s, h: status.append(s)))
        return int(status[0].split()[0])

    try:
        @settings(max_examples=150, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(st.tuples(body, st.booleans()), min_size=BODIES_PER_EXAMPLE,
                        max_size=BODIES_PER_EXAMPLE))
        def run(specs):
            for spec, encrypt in specs:
                assert post(to_bytes(spec), encrypt) < 500, spec

        run()
    finally:
        app.extensions["huzhu.webhook"].close()


def test_unsigned_hostile_bodies_get_403_and_change_nothing(wsgi, cfg, db):
    """5,000 bodies with a wrong signature: every one 403, and not one row anywhere changed."""
    nonces = itertools.count()
    before = fingerprint(db)

    @settings(max_examples=250, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(body, min_size=BODIES_PER_EXAMPLE, max_size=BODIES_PER_EXAMPLE))
    def run(specs):
        for spec in specs:
            assert call(wsgi, cfg.WECHAT_TOKEN, to_bytes(spec), False, nonces) == 403

    run()
    assert fingerprint(db) == before
