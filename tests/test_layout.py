"""The house rules that import-linter cannot state (STYLE.md 1 and 1b), checked on the source:
no module imports another module's `_private` name; code outside a subpackage uses only what
its `__init__.py` lists in `__all__`; `service/` keeps a short top. The import directions
themselves are import-linter contracts in pyproject.toml (`lint-imports`, run by `make test`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("catalog", "core", "chains", "probes", "service", "alerts", "dashboards", "monitor")
ALL = (*CODE, "tests", "bench")
SERVICE_TOP_MAX = 8


@dataclass(frozen=True)
class Use:
    """`module` (dotted) uses `name` of `source` (dotted) at `where`: imported from it, or
    read as an attribute of it (`attribute`)."""

    module: str
    source: str
    name: str
    where: str
    attribute: bool = False


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(packages: tuple[str, ...]) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def uses(path: Path) -> Iterator[Use]:
    """Every name `path` takes from a module of ours: `from m import n`, and `alias.n` where
    `alias` is a module of ours it imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    where = str(path.relative_to(ROOT))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in ALL:
            for alias in node.names:
                yield Use(me, node.module, alias.name, f"{where}:{node.lineno}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ALL:
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            yield Use(me, aliases[node.value.id], node.attr, f"{where}:{node.lineno}", True)


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def subpackages() -> dict[str, set[str]]:
    """Every nested package of our code (`service.store`, `monitor.config`, …) and its
    `__all__` (empty when it has none)."""
    found: dict[str, set[str]] = {}
    for init in sources(CODE):
        if init.name != "__init__.py" or init.parent.parent == ROOT:
            continue
        exported: set[str] = set()
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exported = set(ast.literal_eval(node.value))
        found[module_name(init)] = exported
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    crossings = [f"{u.where}: {u.source}.{u.name}" for path in sources(ALL)
                 for u in uses(path) if private(u.name) and u.source != u.module]
    assert crossings == []


def test_code_outside_a_subpackage_uses_only_its_all() -> None:
    packages = subpackages()
    wrong = []
    for path in sources(CODE):
        for u in uses(path):
            if u.attribute:  # of a module imported as a name, which is checked itself
                continue
            for package, exported in packages.items():
                inside = u.module == package or u.module.startswith(package + ".")
                if inside or not (u.source == package or u.source.startswith(package + ".")):
                    continue
                if u.source != package or u.name not in exported:
                    wrong.append(f"{u.where}: {u.source}.{u.name} (offered: {sorted(exported)})")
                break
    assert wrong == []


def test_every_subpackage_says_what_it_is() -> None:
    for package in subpackages():
        init = ROOT / package.replace(".", "/") / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), package


def test_service_keeps_a_short_top() -> None:
    top = sorted(p.name for p in (ROOT / "service").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= SERVICE_TOP_MAX, top
    assert {p.name for p in (ROOT / "service").iterdir() if p.is_dir()} >= {
        "api", "store", "delivery", "follow"}


def test_the_walkers_see_imports() -> None:
    """The walkers find what they look for (the checks above would pass vacuously if not)."""
    sample = ROOT / "service" / "api" / "monitor_routes.py"
    found = list(uses(sample))
    assert any(u.source == "service.api.base" and u.name == "ApiDeps" for u in found)
    assert "service.store" in subpackages()
    assert "Store" in subpackages()["service.store"]
