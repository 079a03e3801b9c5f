"""The layering rules of DESIGN.md, checked on the source with ``ast`` (our depguard).

Rules, each a pure function over one module's parsed imports:

- ``core``: ``dockyard.core`` knows no transport: no gRPC, generated API, adapters, NATS, HTTP or service.
- ``service``: a service (``services/<name>/dockyard/<name>``) does not import another service's package.
- ``cli``: ``dockyard.cli`` talks to the gateway over the API, never to a service's package.
- ``private``: no module uses another module's underscore name (``from x import _y``, ``x._y``).

Lazy imports inside functions and ``TYPE_CHECKING`` blocks count: they are the same coupling.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Third-party transports the core must not know, besides our own adapters, API and services.
CORE_FORBIDDEN_ROOTS = ("grpc", "dockyard.api", "dockyard.adapters", "nats", "aiohttp")

# Violations tolerated while a branch fixes them. The test fails when one of these disappears, so
# delete the line in the commit that fixes it: this list only shrinks (empty since 2026-12-07).
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    module: str  # the importing module
    imported: str  # a module, or ``module.name`` for a name taken from it
    line: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.imported)

    def __str__(self) -> str:
        return f"{self.module}:{self.line} [{self.rule}] imports {self.imported}"


@dataclass(frozen=True, slots=True)
class Import:
    """One imported thing: ``target`` is a module, ``name`` what is taken from it (None for ``import m``)."""

    target: str
    name: str | None
    line: int

    @property
    def dotted(self) -> str:
        return f"{self.target}.{self.name}" if self.name else self.target


def module_files(root: Path) -> dict[str, Path]:
    """Every hand-written module under ``root`` (lib/ and services/*/), by dotted name."""
    roots = [root / "lib", *sorted(p for p in (root / "services").glob("*") if p.is_dir())]
    found: dict[str, Path] = {}
    for base in roots:
        for path in sorted((base / "dockyard").rglob("*.py")):
            if "_pb2" in path.name:  # generated under dockyard/api
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def service_packages(root: Path) -> frozenset[str]:
    """``dockyard.<name>`` for every services/<name>/dockyard/<name> package."""
    return frozenset(f"dockyard.{p.name}" for p in (root / "services").glob("*/dockyard/*") if p.is_dir())


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports_of(tree: ast.Module, module: str, is_package: bool) -> Iterator[Import]:
    """Every import in ``tree``, relative ones resolved against ``module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, target] if target else base)
            for alias in node.names:
                yield Import(target, alias.name, node.lineno)


def private_attribute_uses(tree: ast.Module, known_modules: Iterable[str]) -> Iterator[Import]:
    """``m._name`` where ``m`` is bound to one of our modules by an import (``import a.b as m``, ...)."""
    known = frozenset(known_modules)
    bound: dict[str, str] = {}  # local name -> dotted module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in known:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr):
            continue
        chain = _dotted(node.value)
        if chain is None:
            continue
        head, _, rest = chain.partition(".")
        if head not in bound:
            continue
        target = ".".join(filter(None, [bound[head], rest]))
        if target in known:
            yield Import(target, node.attr, node.lineno)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def layer_violations(module: str, imports: Iterable[Import], services: frozenset[str]) -> Iterator[Violation]:
    """The ``core``, ``service`` and ``cli`` rules for one module's imports."""
    own_service = next((s for s in services if within(module, s)), None)
    for imp in imports:
        if within(module, "dockyard.core"):
            forbidden = [*CORE_FORBIDDEN_ROOTS, *services]
            if any(within(imp.dotted, root) or within(imp.target, root) for root in forbidden):
                yield Violation("core", module, imp.target, imp.line)
        for service in services:
            if not (within(imp.target, service) or within(imp.dotted, service)):
                continue
            if own_service is not None and service != own_service:
                yield Violation("service", module, imp.target, imp.line)
            elif within(module, "dockyard.cli"):
                yield Violation("cli", module, imp.target, imp.line)


def private_violations(
    module: str, imports: Iterable[Import], known_modules: Iterable[str]
) -> Iterator[Violation]:
    """The ``private`` rule: an underscore name taken from one of our other modules."""
    known = frozenset(known_modules)
    for imp in imports:
        if imp.name is None or not is_private(imp.name) or imp.target == module:
            continue
        if imp.target in known and imp.dotted not in known:  # a name, not a submodule
            yield Violation("private", module, imp.dotted, imp.line)


def check_tree(root: Path) -> list[Violation]:
    """Every rule over every hand-written module under ``root``."""
    files = module_files(root)
    services = service_packages(root)
    violations: list[Violation] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imports = list(imports_of(tree, module, path.name == "__init__.py"))
        violations += layer_violations(module, imports, services)
        violations += private_violations(module, imports, files)
        violations += private_violations(module, private_attribute_uses(tree, files), files)
    return sorted(set(violations), key=lambda v: (v.module, v.line, v.imported))


def against_known(
    violations: Iterable[Violation], known: frozenset[tuple[str, str]]
) -> tuple[list[Violation], list[tuple[str, str]]]:
    """(violations not in ``known``, entries of ``known`` that no longer occur)."""
    violations = list(violations)
    return [v for v in violations if v.key not in known], sorted(known - {v.key for v in violations})


def test_the_import_rules_hold_apart_from_the_known_violations() -> None:
    assert len(module_files(REPO)) > 100, "the checker found too few modules: is REPO right?"
    new, fixed = against_known(check_tree(REPO), KNOWN_VIOLATIONS)
    assert not new, "import rules broken:\n" + "\n".join(map(str, new))
    assert not fixed, f"fixed, so remove from KNOWN_VIOLATIONS: {fixed}"


def _plant(root: Path, relpath: str, source: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_each_rule_reports_a_planted_violation(tmp_path: Path) -> None:
    _plant(tmp_path, "lib/dockyard/core/clean.py", "import json\nfrom dockyard.core import events\n")
    _plant(tmp_path, "lib/dockyard/core/events.py", "def _helper(): ...\n")
    _plant(
        tmp_path, "lib/dockyard/core/bad.py", "import grpc\n\ndef f():\n    from dockyard.adapters import x\n"
    )
    _plant(tmp_path, "lib/dockyard/adapters/x.py", "")
    _plant(tmp_path, "lib/dockyard/api/things/v1/things_pb2.py", "from dockyard.alpha import y\n")
    _plant(tmp_path, "lib/dockyard/cli/verb.py", "from dockyard.alpha.y import thing\n")
    _plant(tmp_path, "services/alpha/dockyard/alpha/__init__.py", "")
    _plant(tmp_path, "services/alpha/dockyard/alpha/y.py", "class _Live: ...\nthing = 1\n")
    _plant(
        tmp_path, "services/alpha/dockyard/alpha/z.py", "from .y import _Live\nfrom dockyard.alpha import y\n"
    )
    _plant(tmp_path, "services/beta/dockyard/beta/w.py", "import dockyard.alpha.y as ay\n\nay._Live()\n")
    _plant(
        tmp_path, "services/beta/dockyard/beta/v.py", "from dockyard.core import events\nevents._helper()\n"
    )
    _plant(
        tmp_path,
        "services/beta/dockyard/beta/dunder.py",
        "from dockyard.core import events\nevents.__name__\n",
    )

    found = {(v.rule, v.module, v.imported) for v in check_tree(tmp_path)}

    assert found == {
        ("core", "dockyard.core.bad", "grpc"),
        ("core", "dockyard.core.bad", "dockyard.adapters"),
        ("cli", "dockyard.cli.verb", "dockyard.alpha.y"),
        ("private", "dockyard.alpha.z", "dockyard.alpha.y._Live"),
        ("service", "dockyard.beta.w", "dockyard.alpha.y"),
        ("private", "dockyard.beta.w", "dockyard.alpha.y._Live"),
        ("private", "dockyard.beta.v", "dockyard.core.events._helper"),
    }


def test_a_known_violation_that_is_gone_is_reported() -> None:
    planted = Violation("cli", "dockyard.cli.verb", "dockyard.alpha.y", 1)
    stale = ("dockyard.cli.gone", "dockyard.alpha.y")
    new, fixed = against_known([planted], frozenset({planted.key, stale}))
    assert (new, fixed) == ([], [stale])
    new, fixed = against_known([planted], frozenset())
    assert (new, fixed) == ([planted], [])
