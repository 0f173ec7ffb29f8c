"""Texts kept as Python format strings in YAML files under templates/ — the scheme file's errors
(scheme_texts.yaml), the households import's (import_texts.yaml), the quota designer's
(design_texts.yaml), the web console's titles and notes (console/texts.yaml): `{name}` is filled
in, `{{` and `}}` are braces. Reply texts are Jinja2 templates instead (core/messages.py)."""
from __future__ import annotations

from functools import lru_cache

import yaml

from core.config import TEMPLATES_DIR


@lru_cache(maxsize=None)
def _texts(name: str) -> dict[str, str]:
    return yaml.safe_load((TEMPLATES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))


def text_of(name: str, key: str, /, **values) -> str:
    """The text `key` of templates/<name>.yaml with `values` filled in."""
    return _texts(name)[key].format(**values)
