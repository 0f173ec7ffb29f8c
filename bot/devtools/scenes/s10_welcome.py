"""Demo scene: a villager follows the account and asks for help; an administrator binds."""
from __future__ import annotations

from core.admins import create_invite


def scene(t, x, state: dict) -> None:
    villager, admin = state["villager"], state["admin"]
    print("\n【村民关注公众号】")
    t.show(t.v.subscribe(villager, wait=0))
    t.say("村民", villager, "0", wait=0)
    t.say("村民", villager, "你好", wait=0)
    t.say("村民", villager, "/待审", wait=0)
    with x.db.session() as s:
        code = create_invite(s, "super", "cli:demo")
    print(f"\n$ huzhu admin invite --role super\n{code}")
    t.say("管理员", admin, f"/绑定 {code}", wait=0)
