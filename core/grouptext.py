"""Text a user typed, made safe to post in a group chat (WeCom group-bot markdown) or a mass
send (WeChat text, which shows `<a href>` as a link): it reads as typed and formats nothing.

`plain(text)` is the one function every user-typed text goes through before a group post
(`core/groups.announce`: `/公告`). It

- drops zero-width characters, bidirectional controls and the BOM (they hide or reorder text);
- turns `[label](address)` and `![label](address)` into the label alone: a link's target cannot
  hide behind trusted words (`[领取补助](http://…)`); an address typed bare stays readable
  but is not a link (`http：//…`, a full-width colon);
- drops HTML tags and mentions (`<font color="warning">`, `<a href=…>`, `<@all>`,
  `<@userid>`), keeping the text between tags; a `<` or `>` left over becomes `＜` `＞`;
- drops heading marks (`# 标题`) and quote marks (`> 署名`) at the start of a line, so the
  sender can neither shout nor fake the signature, which huzhu adds in its own quote line;
- turns the remaining markdown characters into their full-width look-alikes (`*` `＊`,
  `` ` `` `｀`, `[` `［`, `]` `］`, `_` `＿`, `~` `～`, `|` `｜`), so nothing is bold, code or a table.

The result contains none of `< > [ ] * ` _ ~ |` nor `://`, no line starting with `#` or `>`, and
`plain(plain(t)) == plain(t)`.
"""
from __future__ import annotations

import re

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")
_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\(([^()\n]*)\)")
_TAG = re.compile(r"<\s*/?\s*[A-Za-z@!?][^<>\n]*>")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LINE_MARK = re.compile(r"^[ \t　]*(?:(?:#+|>|＞)[ \t　]*)+")
_LOOKALIKE = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "`": "｀",
                            "_": "＿", "~": "～", "|": "｜"})


def plain(text: str) -> str:
    """User-typed text as plain words for a group post (see the module's note)."""
    text = _INVISIBLE.sub("", text or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    previous = None
    while previous != text:  # nested or rebuilt by a removal: `<<b>font>`, `[[a](x)](y)`
        previous = text
        text = _LINK.sub(lambda m: m.group(1), text)
        text = _TAG.sub("", text)
    text = _SCHEME.sub(lambda m: m.group(1) + "：//", text)
    lines = [_LINE_MARK.sub("", line) for line in text.split("\n")]
    return "\n".join(lines).translate(_LOOKALIKE).strip()
