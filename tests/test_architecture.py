"""The import contract of DESIGN.md's three layers, read from the sources with `ast`: `core/`
(the domain) imports no adapter and no web or WeChat library; `handlers/` (the platform-free
dialogue) does not import `bot/`. Every import counts: at module level, inside functions and
classes, under `if TYPE_CHECKING:`, relative ones, and `importlib.import_module("…")` /
`__import__("…")` with a literal name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "core": {"bot", "handlers", "flask", "werkzeug", "wechatpy", "apscheduler"},
    "handlers": {"bot"},
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:max(len(base) - (node.level - 1), 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name:
                found.append((node.lineno, name))
            if node.level:  # `from .. import bot`: the names may be modules
                found += [(node.lineno, ".".join(filter(None, [name, a.name])))
                          for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            callee = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if callee in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(layer: str, source: str, module: str, is_package: bool = False) -> list[str]:
    forbidden = FORBIDDEN[layer]
    return [f"line {line}: {name}" for line, name in imported_names(source, module, is_package)
            if name.split(".")[0] in forbidden]


def layer_sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer):
    files = layer_sources(layer)
    assert len(files) > 10  # the layer is really there
    broken = []
    for path in files:
        module = _module_name(path, ROOT)
        found = violations(layer, path.read_text(encoding="utf-8"), module,
                           path.name == "__init__.py")
        broken += [f"{path.relative_to(ROOT)} {v}" for v in found]
    assert broken == [], f"{layer}/ must not import {sorted(FORBIDDEN[layer])}:\n" + \
        "\n".join(broken)


@pytest.mark.parametrize("snippet", [
    "import flask",
    "import flask.json",
    "from flask import Flask",
    "from werkzeug.exceptions import NotFound",
    "import wechatpy.crypto as c",
    "from apscheduler.schedulers.background import BackgroundScheduler",
    "from bot.poster import find_font",
    "import handlers.router",
    "def f():\n    from bot import wechat\n    return wechat",
    "class A:\n    def m(self):\n        import flask\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.app import AppContext",
    "try:\n    import wechatpy\nexcept ImportError:\n    pass",
    "from .. import bot",
    "import importlib\nm = importlib.import_module('bot.wechat')",
    "m = __import__('flask')",
])
def test_the_checker_catches_a_forbidden_import_in_core(snippet):
    assert violations("core", snippet, "core.claims") != []


@pytest.mark.parametrize("snippet", [
    "from core.models import Claim",
    "import json\nfrom . import money",
    "from .money import format_yuan",
    "import flaskish",  # a different name that starts alike
    "from sqlalchemy import select",
])
def test_the_checker_lets_allowed_imports_pass(snippet):
    assert violations("core", snippet, "core.claims") == []


def test_handlers_may_use_core_but_not_bot():
    assert violations("handlers", "from core.claims import submit", "handlers.claim") == []
    assert violations("handlers", "from bot.wechat import WeChat", "handlers.claim") != []
    assert violations("handlers", "from ..bot import wechat", "handlers.claim") != []


def test_adding_import_flask_to_a_real_core_module_fails_the_contract():
    """What the suite would see if someone wrote `import flask` into core/claims.py."""
    path = ROOT / "core" / "claims.py"
    source = path.read_text(encoding="utf-8")
    assert violations("core", source, "core.claims") == []
    assert violations("core", "import flask\n" + source, "core.claims") == ["line 1: flask"]
    assert violations("core", source + "\n\ndef later():\n    import flask\n",
                      "core.claims") != []
