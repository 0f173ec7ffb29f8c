"""WeChat's message XML, parsed defensively: no DTDs, no entities, no external references."""
from __future__ import annotations

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from xml.etree.ElementTree import ParseError


class BadXml(ValueError):
    pass


def parse_flat(body: bytes) -> dict[str, str]:
    """`<xml><A>..</A><B>..</B></xml>` → {"A": "..", "B": ".."}. Hostile or malformed → BadXml."""
    try:
        root = ElementTree.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                      forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        # LookupError: an encoding the prologue names that Python does not know ("bogus")
        raise BadXml(type(exc).__name__) from exc
    if root.tag != "xml":
        raise BadXml("root is not <xml>")
    return {child.tag: (child.text or "") for child in root}


def cdata(text: str) -> str:
    """A CDATA section holding `text` whole: a "]]>" in it is split across two sections, so
    no text can close its element early."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(source: str, target: str, content: str, created: int) -> str:
    """A passive text reply (`source`: the account, `target`: the villager's openid), laid out
    as WeChat's documentation shows it."""
    return (f"<xml>\n<ToUserName>{cdata(target)}</ToUserName>\n"
            f"<FromUserName>{cdata(source)}</FromUserName>\n"
            f"<CreateTime>{created}</CreateTime>\n"
            f"<MsgType><![CDATA[text]]></MsgType>\n"
            f"<Content>{cdata(content)}</Content>\n</xml>")
