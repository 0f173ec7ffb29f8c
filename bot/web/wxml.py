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
