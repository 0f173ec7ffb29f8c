"""The house rules of ARCHITECTURE.md, kept true: every file it names exists, the layers import
downwards only, production code never needs the development tools, and plug-ins are found by
the package they are in."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "ARCHITECTURE.md"

PATH = re.compile(r"(?<![\w/.])((?:bot|core|handlers|templates|config|tests|bench)/[\w./-]*)")


def test_every_path_in_the_architecture_guide_exists():
    named = {m.rstrip(".,;:/") for m in PATH.findall(GUIDE.read_text(encoding="utf-8"))}
    assert len(named) > 40  # the guide names its files; an empty match would prove nothing
    # a path without a suffix names a module that may be a file or a package
    missing = sorted(p for p in named
                     if not (ROOT / p).exists() and not (ROOT / f"{p}.py").exists())
    assert missing == []


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str, bool]]:
    """(line, module, at module level) for every import in the file, those inside functions
    included; relative imports are made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base, id(node) in top))
            found += [(node.lineno, f"{base}.{a.name}", id(node) in top) for a in node.names]
    return found


def _files(*dirs: str) -> list[Path]:
    files = []
    for d in dirs:
        p = ROOT / d
        files += [p] if p.suffix == ".py" else sorted(p.rglob("*.py"))
    assert files, dirs
    return files


def _violations(files: list[Path], forbidden: tuple[str, ...], lazy_ok: bool = False,
                root: Path = ROOT) -> list[str]:
    bad = []
    for f in files:
        for line, module, top_level in _imports(f, root):
            if lazy_ok and not top_level:
                continue
            if any(module == name or module.startswith(name + ".") for name in forbidden):
                bad.append(f"{f.relative_to(root)}:{line} imports {module}")
    return sorted(set(bad))


def test_core_imports_no_adapter_and_no_web_or_wechat_library():
    assert _violations(_files("core"), ("bot", "handlers", "flask", "werkzeug", "wechatpy",
                                        "apscheduler")) == []


def test_handlers_never_import_bot():
    assert _violations(_files("handlers"), ("bot",)) == []


PRODUCTION = ("bot/web", "bot/clients", "bot/outbox", "bot/jobs", "bot/server.py", "bot/logs.py",
              "bot/discover.py", "bot/__init__.py")


def test_production_code_never_imports_the_development_tools():
    assert _violations(_files(*PRODUCTION), ("bot.devtools",)) == []


def test_the_cli_imports_the_development_tools_only_inside_their_commands():
    assert _violations(_files("bot/cli"), ("bot.devtools",), lazy_ok=True) == []


def test_the_contract_test_sees_imports_inside_functions(tmp_path):
    """The checks above would pass vacuously if nested or relative imports were missed."""
    (tmp_path / "core").mkdir()
    sample = tmp_path / "core" / "sample.py"
    sample.write_text("import json\n\n\ndef f():\n    from bot.web import app\n"
                      "    from . import ledger\n")
    found = _imports(sample, tmp_path)
    assert (1, "json", True) in found
    assert (5, "bot.web", False) in found and (6, "core.ledger", False) in found
    assert _violations([sample], ("bot",), root=tmp_path) == [
        "core/sample.py:5 imports bot.web", "core/sample.py:5 imports bot.web.app"]
    assert _violations([sample], ("bot",), lazy_ok=True, root=tmp_path) == []


@pytest.mark.parametrize("package, hook", [("bot.cli", "register"), ("bot.web", None),
                                           ("bot.devtools.scenes", "scene")])
def test_plug_ins_are_found_by_their_package(package, hook):
    from bot.discover import modules

    found = modules(package)
    assert found, package
    if hook is not None:
        assert [m.__name__ for m in found if not hasattr(m, hook)] == []


def test_every_job_and_deliverer_comes_from_its_package():
    from bot.discover import load_deliverers, load_jobs
    from bot.jobs.scheduler import JOBS
    from bot.outbox.deliver import DELIVERERS

    load_jobs()
    load_deliverers()
    assert {spec.ref.split(":")[0].rsplit(".", 1)[0] for spec in JOBS.values()} == {"bot.jobs"}
    assert {fn.__module__.rsplit(".", 1)[0] for fn in DELIVERERS.values()} == {"bot.outbox"}
    assert {"wechat.send", "wecom.post", "media.download", "wecom.poster"} <= set(DELIVERERS)


def test_bot_keeps_its_modules_in_the_role_packages():
    """Discovery is by package: a module left at bot/ (a `cli_*.py` or `jobs_*.py` say) would
    silently never be loaded. Only the process assembly stays at the top."""
    top = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert top == ["__init__.py", "discover.py", "logs.py", "server.py"]
    packages = sorted(p.parent.name for p in (ROOT / "bot").glob("*/__init__.py"))
    assert packages == ["cli", "clients", "devtools", "jobs", "outbox", "web"]


def _attribute_assignments(files: list[Path], owners: set[str]) -> list[str]:
    """`owner.attr = …` (or `self.owner.attr = …`) anywhere in the files."""
    bad = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f))):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if not isinstance(t, ast.Attribute):
                    continue
                base = t.value
                name = base.id if isinstance(base, ast.Name) else (
                    base.attr if isinstance(base, ast.Attribute)
                    and isinstance(base.value, ast.Name) and base.value.id == "self" else None)
                if name in owners:
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno} sets {name}.{t.attr}")
    return bad


def test_the_app_context_is_given_its_collaborators_not_patched():
    """The payment gateway and the outbox's waker are given to the app context when it is made
    (bot/web/app.py `make_context`); nothing assigns them onto it afterwards."""
    import inspect

    from bot.web.app import AppContext, make_context

    assert {"waker", "gateway"} <= set(inspect.signature(make_context).parameters)
    assert {"waker", "gateway"} <= set(inspect.signature(AppContext).parameters)
    assert _attribute_assignments(_files("bot"), {"x", "app_ctx"}) == []


def test_no_registry_in_core_is_filled_from_outside():
    """core/ offers no `register…` hook for adapters to fill at import: what it needs from
    outside (the payment gateway) is passed in."""
    hooks = [f"{f.relative_to(ROOT)}:{node.lineno} {node.name}"
             for f in _files("core")
             for node in ast.parse(f.read_text(encoding="utf-8")).body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("register")
             and node.name != "register_household"]  # a domain word: a household is registered
    assert hooks == []


def test_handlers_see_a_typed_context_without_a_side_channel():
    """What a handler gets is typed on `Ctx` (the route, the dialogue flag, the gateway): no
    `extra` dict for one layer to leave notes for another."""
    from datetime import datetime

    from handlers.types import Ctx

    ctx = Ctx(cfg=None, vault=None, openid="o", now=datetime.now(), session=lambda: None,
              user=lambda: None)
    assert not hasattr(ctx, "extra")
    uses = [f"{f.relative_to(ROOT)}:{node.lineno}"
            for f in _files("bot", "handlers")
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and node.attr == "extra"]
    assert uses == []
