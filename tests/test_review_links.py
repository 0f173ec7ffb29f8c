"""Claim-photo links are bound to the administrator they were made for: opening one goes
through WeChat's web authorization (snsapi_base, the emulator's authorize page and
sns/oauth2/access_token), over loopback HTTP as a phone's WeChat browser would."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from core.models import AuditLog, Claim

REVIEWER = "o_reviewer_links"
PHOTO = b"\xff\xd8\xff fake jpeg"


def open_in_wechat(emulator: str, openid: str | None, url: str,
                   session: requests.Session | None = None) -> requests.Response:
    """GET url in a browser whose WeChat user is `openid` (None: outside WeChat), following
    the redirects to WeChat's authorization and back."""
    session = session or requests.Session()
    if openid is None:
        return session.get(url, timeout=10)
    return session.get(f"{emulator}/_emulator/oauth/phone", params={"openid": openid, "next": url},
                       timeout=10)


@pytest.fixture
def photo(villager, db, app_ctx, cfg, bot):
    """A claim of 示范镇/东村 with a stored photo; REVIEWER reviews the demo pool; links point
    at the running bot. (document id, the reviewer's link)"""
    from core.admins import create_invite
    from core.media import path_for
    from core.review import document_url
    from tests.factories import M, make_claim, make_household

    cfg.values["PUBLIC_URL"] = bot.url
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山")], village="示范镇/东村",
                            openid="o_villager_links")
        claim = make_claim(s, hh, hh.members[0])
        doc = claim.documents[0]
        path = path_for(cfg.data_dir, doc.sha256, doc.content_type)
        doc_id = doc.id
        code = create_invite(s, "reviewer", "cli:test", pool="demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PHOTO)
    assert "绑定成功" in villager.text(REVIEWER, f"/绑定 {code}").reply
    return doc_id, document_url(cfg, doc_id, REVIEWER)


def _refused(r: requests.Response) -> None:
    assert r.status_code == 404 and PHOTO not in r.content
    assert "找不到这张照片" in r.text and r.headers["Content-Type"].startswith("text/html")
    assert "no-store" in r.headers["Cache-Control"]


def test_the_administrator_the_link_was_made_for_sees_the_photo(photo, emulator, db):
    _doc_id, url = photo
    r = open_in_wechat(emulator, REVIEWER, url)
    assert r.status_code == 200 and r.content == PHOTO
    # it went to WeChat's authorization page, asking snsapi_base, and came back with a code
    (to_wechat, back) = r.history[1:3]
    auth = urlsplit(to_wechat.headers["Location"])
    q = parse_qs(auth.query)
    assert auth.path == "/connect/oauth2/authorize" and q["scope"] == ["snsapi_base"]
    assert q["response_type"] == ["code"] and q["redirect_uri"] == [url] and q["state"]
    assert to_wechat.headers["Location"].endswith("#wechat_redirect")
    assert "code=" in back.headers["Location"]
    calls = requests.get(f"{emulator}/_emulator/calls",
                         params={"path": "/sns/oauth2/access_token"}, timeout=5).json()
    assert calls[-1]["query"]["grant_type"] == "authorization_code"
    assert calls[-1]["query"]["code"] == parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    for h, v in {"Cache-Control": "private, no-store", "X-Frame-Options": "DENY",
                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}.items():
        assert r.headers[h] == v
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_anyone_else_opening_the_link_sees_nothing(photo, emulator, villager, db):
    from core.admins import create_invite

    doc_id, url = photo
    with db.session() as s:
        code = create_invite(s, "pool_admin", "cli:test", pool="demo")
    assert "绑定成功" in villager.text("o_other_admin", f"/绑定 {code}").reply
    for opener in ("o_other_admin", "o_villager_links", "o_stranger"):
        _refused(open_in_wechat(emulator, opener, url))
    with db.session() as s:
        refused = s.scalars(select(AuditLog).where(AuditLog.action == "admin.refused",
                                                   AuditLog.entity_id == str(doc_id))).all()
        assert {(a.actor, a.after["why"]) for a in refused} == {
            ("o_other_admin", "not_the_addressee"), ("o_villager_links", "not_the_addressee"),
            ("o_stranger", "not_the_addressee")}
        assert not s.scalars(select(AuditLog).where(AuditLog.action == "review.document")).all()


def test_without_wechat_authorization_the_link_shows_nothing(photo, emulator, bot):
    _doc_id, url = photo
    r = open_in_wechat(emulator, None, url)  # a browser outside WeChat
    assert r.status_code == 200 and PHOTO not in r.content and "请在微信客户端打开链接" in r.text
    # the link with a code made up, or a state that is not this browser's
    _refused(requests.get(url, params={"code": "made-up", "state": "x"}, timeout=10))
    session = requests.Session()
    first = session.get(url, allow_redirects=False, timeout=10)
    assert first.status_code == 302 and "no-store" in first.headers["Cache-Control"]
    _refused(session.get(url, params={"code": "made-up", "state": "not-the-cookie's"},
                         timeout=10))


def test_a_code_works_once(photo, emulator):
    _doc_id, url = photo
    r = open_in_wechat(emulator, REVIEWER, url)
    assert r.status_code == 200
    _refused(requests.get(r.url, cookies=r.cookies, timeout=10))  # the same code again


def test_forged_expired_and_revoked_links_are_refused(photo, emulator, cfg, db, monkeypatch):
    from core.models import AdminGrant
    from core.review import links

    _doc_id, url = photo
    _refused(open_in_wechat(emulator, REVIEWER, url[:-4] + "AAAA"))
    _refused(open_in_wechat(emulator, REVIEWER, url.replace("/documents/", "/documents/x")))
    monkeypatch.setattr(links, "LINK_VALID_SECONDS", -1)
    r = open_in_wechat(emulator, REVIEWER, url)
    assert r.status_code == 410 and "链接已过期" in r.text and PHOTO not in r.content
    monkeypatch.undo()
    with db.session() as s:  # the administrator is one no more
        for grant in s.scalars(select(AdminGrant).where(AdminGrant.openid == REVIEWER)):
            s.delete(grant)
    _refused(open_in_wechat(emulator, REVIEWER, url))


def test_the_emulator_answers_web_authorization_as_wechat_does(emulator):
    r = requests.get(f"{emulator}/connect/oauth2/authorize", params={
        "appid": "wxdemo0000000000", "redirect_uri": "http://127.0.0.1:1/back?x=1",
        "response_type": "code", "scope": "snsapi_base", "state": "s1"},
        cookies={"emulator_wechat_openid": "o_me"}, allow_redirects=False, timeout=5)
    assert r.status_code == 302
    back = urlsplit(r.headers["Location"])
    q = parse_qs(back.query)
    assert back.path == "/back" and q["x"] == ["1"] and q["state"] == ["s1"]
    params = {"appid": "wxdemo0000000000", "secret": "demo-app-secret",
              "code": q["code"][0], "grant_type": "authorization_code"}
    got = requests.get(f"{emulator}/sns/oauth2/access_token", params=params, timeout=5).json()
    assert got["openid"] == "o_me" and got["scope"] == "snsapi_base" and got["access_token"]
    again = requests.get(f"{emulator}/sns/oauth2/access_token", params=params, timeout=5).json()
    assert again["errcode"] == 40163
    wrong = requests.get(f"{emulator}/sns/oauth2/access_token",
                         params={**params, "code": "nope"}, timeout=5).json()
    assert wrong["errcode"] == 40029
    outside = requests.get(f"{emulator}/connect/oauth2/authorize", params={
        "appid": "wxdemo0000000000", "redirect_uri": "http://127.0.0.1:1/back",
        "response_type": "code", "scope": "snsapi_base"}, allow_redirects=False, timeout=5)
    assert outside.status_code == 200 and "请在微信客户端打开链接" in outside.text
