"""The local WeChat emulator answers as the real APIs do and records every call it receives."""
from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io

import pytest
import requests
from PIL import Image

from bot.devtools.emulator import BackgroundServer, create_emulator_app


@pytest.fixture
def emu(tmp_path):
    with BackgroundServer(create_emulator_app(tmp_path / "emulator")) as server:
        yield server


def png_bytes(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def stable_token(url, appid="wxtest", force=False) -> str:
    res = requests.post(f"{url}/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": appid, "secret": "s3cret",
        "force_refresh": force}).json()
    assert res["expires_in"] > 7000
    return res["access_token"]


def api(url, path, token, body=None, **params):
    params["access_token"] = token
    if body is None:
        return requests.get(f"{url}{path}", params=params).json()
    return requests.post(f"{url}{path}", params=params, json=body).json()


def text_to(openid, content="您好"):
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def calls(url, **filters):
    return requests.get(f"{url}/_emulator/calls", params=filters).json()


# -- tokens --------------------------------------------------------------------------------------

def test_stable_token_is_reused_until_forced(emu):
    first = stable_token(emu.url)
    assert stable_token(emu.url) == first
    forced = stable_token(emu.url, force=True)
    assert forced != first
    # the forced refresh revoked the old token at once
    assert api(emu.url, "/cgi-bin/message/custom/send", first, text_to("o1"))["errcode"] == 40001
    assert api(emu.url, "/cgi-bin/message/custom/send", forced, text_to("o1"))["errcode"] == 0


def test_token_endpoint_issues_tokens_and_checks_its_parameters(emu):
    ok = requests.get(f"{emu.url}/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": "wxtest", "secret": "x"}).json()
    assert ok["expires_in"] == 7200 and ok["access_token"]
    bad_grant = requests.get(f"{emu.url}/cgi-bin/token", params={
        "grant_type": "password", "appid": "wxtest", "secret": "x"}).json()
    no_secret = requests.get(f"{emu.url}/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": "wxtest"}).json()
    assert (bad_grant["errcode"], no_secret["errcode"]) == (40002, 41004)
    assert "rid:" in bad_grant["errmsg"]


def test_known_apps_only_with_their_secret():
    app = create_emulator_app(apps={"wxreal": "right"})
    client = app.test_client()

    def code(appid, secret):
        return client.post("/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": appid, "secret": secret}).json.get("errcode", 0)
    assert (code("wxreal", "right"), code("wxreal", "wrong"), code("wxother", "right")) == (0, 40125, 40013)


def test_api_calls_check_the_access_token(emu):
    token = stable_token(emu.url)
    path = "/cgi-bin/message/custom/send"
    assert requests.post(f"{emu.url}{path}", json=text_to("o1")).json()["errcode"] == 41001
    assert api(emu.url, path, "not-a-token", text_to("o1"))["errcode"] == 40001
    requests.post(f"{emu.url}/_emulator/tokens/expire")
    assert api(emu.url, path, token, text_to("o1"))["errcode"] == 42001
    # an expired stable token is replaced by the next normal-mode call
    assert api(emu.url, path, stable_token(emu.url), text_to("o1"))["errcode"] == 0


# -- the call log --------------------------------------------------------------------------------

def test_every_call_is_recorded_and_filtered(emu):
    token = stable_token(emu.url)
    api(emu.url, "/cgi-bin/message/custom/send", token, text_to("o-alice", "第一条"))
    mark = calls(emu.url)[-1]["id"]
    requests.post(f"{emu.url}/_emulator/templates", json={"T1": ["content"]})
    api(emu.url, "/cgi-bin/message/template/send", token, {
        "touser": "o-bob", "template_id": "T1", "data": {"content": {"value": "进度"}}})
    api(emu.url, "/cgi-bin/message/custom/send", token, text_to("o-alice", "第二条"))

    everything = calls(emu.url)
    assert [c["path"] for c in everything] == [
        "/cgi-bin/stable_token", "/cgi-bin/message/custom/send",
        "/cgi-bin/message/template/send", "/cgi-bin/message/custom/send"]
    first = everything[1]
    assert first["method"] == "POST" and first["query"]["access_token"] == token
    assert first["json"]["text"]["content"] == "第一条" and first["touser"] == "o-alice"
    assert first["status"] == 200 and first["errcode"] == 0 and first["at"]

    alice = calls(emu.url, touser="o-alice")
    assert [c["json"]["text"]["content"] for c in alice] == ["第一条", "第二条"]
    assert [c["touser"] for c in calls(emu.url, since=mark)] == ["o-bob", "o-alice"]

    requests.delete(f"{emu.url}/_emulator/calls")
    assert calls(emu.url) == []


def test_concurrent_calls_are_all_recorded(emu):
    token = stable_token(emu.url)

    def send(i):
        return api(emu.url, "/cgi-bin/message/custom/send", token, text_to(f"o{i}", f"m{i}"))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(60)))
    assert all(r["errcode"] == 0 for r in results)
    sent = calls(emu.url, path="/cgi-bin/message/custom/send")
    assert sorted(c["touser"] for c in sent) == sorted(f"o{i}" for i in range(60))
    assert len({c["id"] for c in sent}) == 60


# -- failure knobs -------------------------------------------------------------------------------

@pytest.mark.parametrize("errcode", [45015, 45047, -1])
def test_failure_knob_answers_the_errcode_count_times(emu, errcode):
    token = stable_token(emu.url)
    path = "/cgi-bin/message/custom/send"
    armed = requests.post(f"{emu.url}/_emulator/fail",
                          json={"path": path, "errcode": errcode, "count": 2})
    assert armed.ok
    answers = [api(emu.url, path, token, text_to("o1"))["errcode"] for _ in range(3)]
    assert answers == [errcode, errcode, 0]


def test_failure_knob_http500(emu):
    token = stable_token(emu.url)
    path = "/cgi-bin/message/template/send"
    requests.post(f"{emu.url}/_emulator/fail", json={"path": path, "errcode": "http500"})
    res = requests.post(f"{emu.url}{path}", params={"access_token": token}, json={})
    assert res.status_code == 500
    assert calls(emu.url, path=path)[-1]["status"] == 500


def test_failure_knob_disarms_and_rejects_nonsense(emu):
    token = stable_token(emu.url)
    path = "/cgi-bin/message/custom/send"
    requests.post(f"{emu.url}/_emulator/fail", json={"path": path, "errcode": 45015, "count": 9})
    requests.post(f"{emu.url}/_emulator/fail", json={"path": path, "errcode": 45015, "count": 0})
    assert api(emu.url, path, token, text_to("o1"))["errcode"] == 0
    requests.post(f"{emu.url}/_emulator/fail", json={"path": path, "errcode": 45015, "count": 9})
    requests.delete(f"{emu.url}/_emulator/fail")
    assert api(emu.url, path, token, text_to("o1"))["errcode"] == 0
    res = requests.post(f"{emu.url}/_emulator/fail", json={"path": "x", "errcode": 1})
    assert res.status_code == 400


# -- messages ------------------------------------------------------------------------------------

def test_message_validation_like_wechat(emu):
    token = stable_token(emu.url)
    custom = "/cgi-bin/message/custom/send"
    assert api(emu.url, custom, token, {"msgtype": "text", "text": {"content": "x"}})["errcode"] == 40003
    assert api(emu.url, custom, token, text_to("o1", ""))["errcode"] == 44004
    assert api(emu.url, custom, token, {"touser": "o1", "msgtype": "fax", "fax": {}})["errcode"] == 40008
    assert api(emu.url, custom, token, {"touser": "o1", "msgtype": "image",
                                        "image": {"media_id": "nope"}})["errcode"] == 40007
    two_articles = {"touser": "o1", "msgtype": "news", "news": {"articles": [
        {"title": "a", "url": "https://example.org"}, {"title": "b", "url": "https://example.org"}]}}
    assert api(emu.url, custom, token, two_articles)["errcode"] == 45008
    one_article = {"touser": "o1", "msgtype": "news", "news": {"articles": [{"title": "a"}]}}
    assert api(emu.url, custom, token, one_article)["errcode"] == 0
    assert requests.post(f"{emu.url}{custom}", params={"access_token": token},
                         data=b"{not json").json()["errcode"] == 47001

    template = "/cgi-bin/message/template/send"
    requests.post(f"{emu.url}/_emulator/templates", json={"T": ["content"]})
    good = {"touser": "o1", "template_id": "T", "data": {"content": {"value": "您好"}}}
    answer = api(emu.url, template, token, good)
    assert answer["errcode"] == 0 and isinstance(answer["msgid"], int)
    assert api(emu.url, template, token, {**good, "template_id": ""})["errcode"] == 40037
    # a template the account has not added
    assert api(emu.url, template, token, {**good, "template_id": "T-unknown"})["errcode"] == 40037
    # subscription notices: only after the user accepted the template, one per acceptance
    bizsend = "/cgi-bin/message/subscribe/bizsend"
    assert api(emu.url, bizsend, token, good)["errcode"] == 43101
    requests.post(f"{emu.url}/_emulator/subscribe", json={"openid": "o1", "template_ids": ["T"]})
    assert api(emu.url, bizsend, token, good)["errcode"] == 0
    assert api(emu.url, bizsend, token, good)["errcode"] == 43101


@pytest.mark.parametrize("field, value, ok", [
    ("thing2", "王*山的补助申请已审核", True),
    ("thing2", "一" * 21, False),                   # thing: at most 20 characters
    ("thing2", "第一行\n第二行", False),              # never a line break
    ("character_string1", "C20260001", True),
    ("character_string1", "C" * 33, False),
    ("character_string1", "申请C1", False),          # letters, digits and symbols only
    ("phrase3", "已通过", True),
    ("phrase3", "审核已经通过", False),               # at most 5 characters
    ("amount4", "1234.56元", True),
    ("amount4", "1,234.56 元", False),               # a number, no separator
    ("time5", "2026年3月1日", True),
    ("time5", "下周一", False),
    ("name6", "王*山", True),
    ("name6", "王" * 11, False),
])
def test_template_fields_follow_wechat_rules(emu, field, value, ok):
    """A value over its field's limit, with a line break or not of its kind: 47003, as WeChat."""
    token = stable_token(emu.url)
    requests.post(f"{emu.url}/_emulator/templates", json={"TR": [field]})
    answer = api(emu.url, "/cgi-bin/message/template/send", token, {
        "touser": "o1", "template_id": "TR", "data": {field: {"value": value}}})
    assert answer["errcode"] == (0 if ok else 47003), answer


# -- media ---------------------------------------------------------------------------------------

def test_media_upload_and_download_keep_the_bytes(emu):
    token = stable_token(emu.url)
    data = png_bytes()
    up = requests.post(f"{emu.url}/cgi-bin/media/upload",
                       params={"access_token": token, "type": "image"},
                       files={"media": ("photo.png", data, "image/png")}).json()
    assert up["type"] == "image" and up["media_id"]
    got = requests.get(f"{emu.url}/cgi-bin/media/get",
                       params={"access_token": token, "media_id": up["media_id"]})
    assert got.content == data and got.headers["Content-Type"] == "image/png"
    recorded = calls(emu.url, path="/cgi-bin/media/upload")[0]
    assert recorded["files"]["media"]["sha256"] == hashlib.sha256(data).hexdigest()

    missing = requests.get(f"{emu.url}/cgi-bin/media/get",
                           params={"access_token": token, "media_id": "unknown"}).json()
    assert missing["errcode"] == 40007
    not_an_image = requests.post(f"{emu.url}/cgi-bin/media/upload",
                                 params={"access_token": token, "type": "image"},
                                 files={"media": ("a.txt", b"hello", "text/plain")}).json()
    assert not_an_image["errcode"] == 40005


def test_media_sent_by_a_user(emu):
    data = png_bytes((10, 120, 10))
    res = requests.post(f"{emu.url}/_emulator/media",
                        files={"media": ("discharge.png", data, "image/png")}).json()
    assert requests.get(res["pic_url"]).content == data
    token = stable_token(emu.url)
    got = requests.get(f"{emu.url}/cgi-bin/media/get",
                       params={"access_token": token, "media_id": res["media_id"]})
    assert got.content == data


def test_media_survive_a_restart_with_the_same_state_dir(tmp_path):
    data = png_bytes()
    with BackgroundServer(create_emulator_app(tmp_path)) as first:
        media_id = requests.post(f"{first.url}/_emulator/media",
                                 files={"media": ("a.png", data)}).json()["media_id"]
    with BackgroundServer(create_emulator_app(tmp_path)) as second:
        assert requests.get(f"{second.url}/_emulator/media/{media_id}").content == data


# -- QR codes, menus, tags, mass sends -----------------------------------------------------------

def test_qrcode_with_a_scene_renders_a_png(emu):
    token = stable_token(emu.url)
    res = api(emu.url, "/cgi-bin/qrcode/create", token, {
        "action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "village:7"}}})
    assert res["url"].startswith("http://weixin.qq.com/q/") and "expire_seconds" not in res
    png = requests.get(f"{emu.url}/cgi-bin/showqrcode", params={"ticket": res["ticket"]})
    assert png.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    scenes = requests.get(f"{emu.url}/_emulator/qrcodes").json()
    assert scenes[0]["scene"] == "village:7"

    temporary = api(emu.url, "/cgi-bin/qrcode/create", token, {
        "action_name": "QR_STR_SCENE", "expire_seconds": 600,
        "action_info": {"scene": {"scene_str": "x"}}})
    assert temporary["expire_seconds"] == 600
    assert api(emu.url, "/cgi-bin/qrcode/create", token,
               {"action_name": "QR_NOPE"})["errcode"] == 40052
    assert requests.get(f"{emu.url}/cgi-bin/showqrcode", params={"ticket": "zz"}).status_code == 404


def test_menu_create_validates_like_wechat(emu):
    token = stable_token(emu.url)
    menu = {"button": [
        {"type": "click", "name": "参加互助", "key": "MENU_SIGNUP"},
        {"name": "服务", "sub_button": [{"type": "click", "name": "查询进度", "key": "MENU_PROGRESS"},
                                         {"type": "view", "name": "基金公示", "url": "https://example.org/f"}]}]}
    assert api(emu.url, "/cgi-bin/menu/create", token, menu)["errcode"] == 0
    assert api(emu.url, "/cgi-bin/menu/get", token)["menu"] == menu
    four = {"button": [{"type": "click", "name": f"b{i}", "key": "k"} for i in range(4)]}
    assert api(emu.url, "/cgi-bin/menu/create", token, four)["errcode"] == 40016
    untyped = {"button": [{"name": "x", "key": "k"}]}
    assert api(emu.url, "/cgi-bin/menu/create", token, untyped)["errcode"] == 40017


def test_tags_and_mass_send_reach_the_tagged_users(emu):
    token = stable_token(emu.url)
    tag = api(emu.url, "/cgi-bin/tags/create", token, {"tag": {"name": "大溪村"}})["tag"]
    assert tag["id"] >= 100
    assert api(emu.url, "/cgi-bin/tags/create", token, {"tag": {"name": "大溪村"}})["errcode"] == 45157
    tagged = api(emu.url, "/cgi-bin/tags/members/batchtagging", token,
                 {"openid_list": ["o-a", "o-b"], "tagid": tag["id"]})
    assert tagged["errcode"] == 0
    listed = {t["name"]: t["count"] for t in api(emu.url, "/cgi-bin/tags/get", token)["tags"]}
    assert listed["大溪村"] == 2
    sent = api(emu.url, "/cgi-bin/message/mass/sendall", token, {
        "filter": {"is_to_all": False, "tag_id": tag["id"]},
        "msgtype": "text", "text": {"content": "下月5日发放补助"}})
    assert sent["errcode"] == 0 and sent["msg_id"]
    assert [c["path"] for c in calls(emu.url, touser="o-b")] == ["/cgi-bin/message/mass/sendall"]
    unknown = api(emu.url, "/cgi-bin/message/mass/sendall", token, {
        "filter": {"is_to_all": False, "tag_id": 999}, "msgtype": "text", "text": {"content": "x"}})
    assert unknown["errcode"] == 45159


# -- WeCom group bots ----------------------------------------------------------------------------

def wecom(url, key, body):
    return requests.post(f"{url}/cgi-bin/webhook/send", params={"key": key}, json=body).json()


def test_wecom_markdown_limit_and_image_md5(emu):
    fits = "公" * (4096 // 3)
    assert wecom(emu.url, "K", {"msgtype": "markdown", "markdown": {"content": fits}})["errcode"] == 0
    too_long = wecom(emu.url, "K", {"msgtype": "markdown", "markdown": {"content": fits + "示"}})
    assert too_long["errcode"] == 40058 and "4096" in too_long["errmsg"]

    data = png_bytes()
    image = {"base64": base64.b64encode(data).decode(), "md5": hashlib.md5(data).hexdigest()}
    assert wecom(emu.url, "K", {"msgtype": "image", "image": image})["errcode"] == 0
    wrong = {**image, "md5": hashlib.md5(b"other").hexdigest()}
    assert wecom(emu.url, "K", {"msgtype": "image", "image": wrong})["errcode"] == 301019
    assert wecom(emu.url, "", {"msgtype": "text", "text": {"content": "x"}})["errcode"] == 93000


def test_wecom_rate_limit_per_key(emu):
    body = {"msgtype": "text", "text": {"content": "公告"}}
    answers = [wecom(emu.url, "K1", body)["errcode"] for _ in range(21)]
    assert answers == [0] * 20 + [45009]
    assert wecom(emu.url, "K2", body)["errcode"] == 0  # another group's bot is not limited
    requests.post(f"{emu.url}/_emulator/reset")
    assert wecom(emu.url, "K1", body)["errcode"] == 0
