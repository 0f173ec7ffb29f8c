"""The villager menu of SPEC: numbers, words and custom-menu keys all work."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MenuItem:
    number: str
    word: str
    dialogue: str  # the Dialogue that serves it
    key: str  # custom-menu CLICK key


MENU = (
    MenuItem("1", "参加互助", "signup", "MENU_SIGNUP"),
    MenuItem("2", "缴费", "payment", "MENU_PAYMENT"),
    MenuItem("3", "申请补助", "claim", "MENU_CLAIM"),
    MenuItem("4", "查询进度", "progress", "MENU_PROGRESS"),
    MenuItem("5", "查询余额", "balance", "MENU_BALANCE"),
    MenuItem("6", "基金公示", "fund", "MENU_FUND"),
    MenuItem("0", "帮助", "help", "MENU_HELP"),
)

HELP_WORDS = ("0", "帮助", "菜单", "help", "?", "？", "MENU_HELP")
CANCEL_WORDS = ("取消", "退出")


def find(text: str) -> MenuItem | None:
    for item in MENU:
        if text in (item.number, item.word, item.key):
            return item
    return None


def custom_menu() -> dict:
    """The official account's custom menu (three buttons, the rest in sub-menus)."""
    def click(item: MenuItem) -> dict:
        return {"type": "click", "name": item.word, "key": item.key}

    by = {m.dialogue: m for m in MENU}
    return {"button": [
        {"name": by["signup"].word, "sub_button": [click(by["signup"]), click(by["payment"])]},
        click(by["claim"]),
        {"name": "查询", "sub_button": [click(by["progress"]), click(by["balance"]),
                                       click(by["fund"]), click(by["help"])]},
    ]}
