#!/usr/bin/env python3
"""No import circles: builds the module graph of the Python package and of the cortex crate, and lists every cycle.

Usage: ``python scripts/check_imports.py [--python DIR] [--rust DIR]`` (defaults: ``python/rusty_genius`` and
``rust/cortex/src``). Exits 1 listing each cycle (a strongly connected component of two or more modules, with the
edges that make it and where they are written), 0 when there is none. It reads the sources only (``ast`` for
Python, a small tokenizer for Rust); it imports and builds nothing.

Python rules
- A node is a module: ``a/b.py`` is ``a.b``, ``a/__init__.py`` is the package ``a``; an extension module or stub
  (``_native.pyi``) is a node too. Only imports of modules inside the package are edges.
- Every import statement counts, wherever it is (top level, inside functions and classes, in ``try``), except in the
  body of ``if TYPE_CHECKING:`` (its ``else`` counts): a lazy import still makes the two modules depend on each other.
- ``import a.b`` is an edge to ``a.b`` (a package: to its ``__init__``). ``from a import n`` is an edge to the
  submodule ``a.n`` when there is one, else to ``a``. Relative imports are resolved against the importer's package.
- Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first: those are edges too, except into packages that
  contain the importer (they were already being imported before it ran).
- The facade rule: a package ``__init__`` re-exports its submodules' names (``from rusty_genius import Genius`` is
  the public way in, and the package's own modules use it too). An import that a module makes from a package that
  contains it (``from rusty_genius import X`` inside ``rusty_genius.ogenius.cli``, or ``import rusty_genius`` then
  ``rusty_genius.X``) is an edge to the module that *defines* ``X``, found by following the ``__init__``'s
  re-exports (``from m import X``, ``from m import *``). A name the ``__init__`` defines itself keeps the edge to the
  ``__init__``, so an ``__init__`` and a submodule that need each other's code still make a cycle. An import of a
  package from outside it always depends on its ``__init__`` (all of it runs).

Rust rules (one crate)
- A node is a module: ``lib.rs`` is ``crate``; ``mod x;`` declares ``x.rs`` or ``x/mod.rs`` beside it (beside a
  non-root file ``f.rs``: in ``f/``); an inline ``mod x { ... }`` is a node of its own (so a ``tests`` module that
  uses the crate never makes a cycle: nothing uses it).
- Edges are the ``crate::``, ``super::`` and ``self::`` paths a module writes, in ``use`` trees (braces, globs,
  ``as``) and anywhere in its code; comments and string literals are skipped. ``super::`` is the parent module
  (``super::super::`` its parent), ``self::`` the module itself. A path names the longest prefix of it that is a
  module; a name after it that the module re-exports with ``pub use`` is followed to where it is defined (the
  facade rule again: ``crate::Worker`` is ``crate::worker``). A module's own ``pub use`` lines are not edges (they
  forward names, they do not use them); declaring a child with ``mod`` is not an edge.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str
    """``file:line``, and what is written there."""


# -- cycles ---------------------------------------------------------------------------------------------------------


def cycles(nodes: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components of two or more nodes (Tarjan, iterative), each sorted, sorted by first node."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


# -- Python ---------------------------------------------------------------------------------------------------------


@dataclass
class PyModule:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module | None = None
    defined: set[str] = field(default_factory=set)
    """Names bound at top level by code (def, class, assignment), not by an import."""
    reexports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Top-level ``name -> (module, name in it)`` from ``from m import x``; ``(module, None)`` for a module itself."""
    stars: list[str] = field(default_factory=list)
    """Modules this one does ``from m import *`` of, at top level."""

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt
                yield from _walk(stmt)
            continue
        yield child
        yield from _walk(child)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, looking into ``try`` and non-TYPE_CHECKING ``if`` blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _top_level(stmt.orelse if _is_type_checking(stmt.test) else [*stmt.body, *stmt.orelse])
        elif isinstance(stmt, ast.Try):
            yield from _top_level([*stmt.body, *stmt.orelse, *stmt.finalbody])
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
        else:
            yield stmt


class PyGraph:
    def __init__(self, package_dir: Path) -> None:
        self.base = package_dir.parent
        self.modules: dict[str, PyModule] = {}
        for path in sorted(package_dir.rglob("*")):
            if path.suffix not in (".py", ".pyi", ".so", ".pyd") or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(self.base).with_suffix("").parts)
            parts[-1] = parts[-1].split(".")[0]  # _native.cpython-311-x86_64-linux-gnu
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            if name in self.modules and path.suffix != ".py":
                continue
            self.modules[name] = PyModule(name, path, is_package)
        for module in self.modules.values():
            if module.path.suffix == ".py":
                module.tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
                self._index(module)

    def _absolute(self, module: PyModule, level: int, name: str | None) -> str:
        if level == 0:
            return name or ""
        base = module.package.split(".")
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join([*base, *([name] if name else [])])

    def _index(self, module: PyModule) -> None:
        assert module.tree is not None
        for stmt in _top_level(module.tree.body):
            if isinstance(stmt, ast.ImportFrom):
                source = self._absolute(module, stmt.level, stmt.module)
                for alias in stmt.names:
                    if alias.name == "*":
                        module.stars.append(source)
                    elif f"{source}.{alias.name}" in self.modules:
                        module.reexports[alias.asname or alias.name] = (f"{source}.{alias.name}", None)
                    else:
                        module.reexports[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        module.reexports[alias.asname] = (alias.name, None)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                module.defined.add(stmt.name)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    module.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))

    def exports(self, name: str) -> set[str]:
        """What ``from name import *`` binds: its ``__all__`` when it is a literal list, else its public names."""
        module = self.modules.get(name)
        if module is None or module.tree is None:
            return set()
        for stmt in _top_level(module.tree.body):
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets
            ):
                try:
                    value = ast.literal_eval(stmt.value)
                except ValueError:
                    break
                return {str(v) for v in value}
        public = module.defined | set(module.reexports)
        for star in module.stars:
            public |= self.exports(star)
        return {n for n in public if not n.startswith("_")}

    def definer(self, name: str, attr: str, seen: frozenset[tuple[str, str]] = frozenset()) -> str:
        """The module ``attr`` of module ``name`` comes from: a submodule, or through a package's re-exports (a plain
        module that re-exports a name is where it comes from: importing the name runs all of it)."""
        if f"{name}.{attr}" in self.modules:
            return f"{name}.{attr}"
        module = self.modules.get(name)
        if module is None or not module.is_package or (name, attr) in seen or attr in module.defined:
            return name
        seen = seen | {(name, attr)}
        if attr in module.reexports:
            source, inner = module.reexports[attr]
            if source not in self.modules:
                return name  # bound from outside the package
            return source if inner is None else self.definer(source, inner, seen)
        for star in module.stars:
            if attr in self.exports(star):
                return self.definer(star, attr, seen)
        return name

    def _contains(self, package: str, module: PyModule) -> bool:
        return module.name.startswith(package + ".") and self.modules[package].is_package

    def _parents(self, module: PyModule, target: str) -> Iterator[str]:
        """The packages importing ``target`` runs first, leaving out those that contain ``module``."""
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in self.modules and not self._contains(parent, module):
                yield parent

    def _attribute_uses(self, tree: ast.AST, bound: str) -> list[list[str]]:
        """The dotted chains ``bound.x.y`` written in ``tree`` (``[x, y]``); [] when ``bound`` is used bare."""
        chains: list[list[str]] = []
        bare = False
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == bound:
                chain: list[str] = []
                up = parents.get(node)
                while isinstance(up, ast.Attribute):
                    chain.append(up.attr)
                    up = parents.get(up)
                if chain:
                    chains.append(chain)
                else:
                    bare = True
        return [] if bare else chains

    def edges(self) -> list[Edge]:
        found: list[Edge] = []
        for module in self.modules.values():
            if module.tree is None:
                continue
            rel = _shown(module.path)

            def add(target: str, node: ast.stmt, text: str, module: PyModule = module, rel: str = rel) -> None:
                if target in self.modules and target != module.name:
                    found.append(Edge(module.name, target, f"{rel}:{node.lineno} {text}"))

            for node in _walk(module.tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        target = alias.name
                        if target.split(".")[0] not in {m.split(".")[0] for m in self.modules}:
                            continue
                        text = f"import {target}" + (f" as {alias.asname}" if alias.asname else "")
                        for parent in self._parents(module, target):
                            add(parent, node, text)
                        if target in self.modules and self._contains(target, module):
                            # import P (P contains this module): depends on what it uses of P.
                            bound = alias.asname or target.split(".")[0]
                            chains = self._attribute_uses(module.tree, bound)
                            if not alias.asname:
                                depth = target.count(".")
                                chains = [c[depth:] for c in chains if len(c) > depth]
                            if chains:
                                for chain in chains:
                                    add(self._follow(target, chain), node, f"{text} ({'.'.join([target, *chain])})")
                                continue
                        add(target, node, text)
                elif isinstance(node, ast.ImportFrom):
                    source = self._absolute(module, node.level, node.module)
                    if source.split(".")[0] not in {m.split(".")[0] for m in self.modules}:
                        continue
                    for parent in self._parents(module, source):
                        add(parent, node, f"from {'.' * node.level}{node.module or ''} import ...")
                    for alias in node.names:
                        text = f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                        if alias.name == "*":
                            add(source, node, text)
                        elif f"{source}.{alias.name}" in self.modules:
                            add(f"{source}.{alias.name}", node, text)
                        elif source in self.modules and self._contains(source, module):
                            add(self.definer(source, alias.name), node, text)
                        else:
                            add(source, node, text)
        return found

    def _follow(self, package: str, chain: list[str]) -> str:
        """The module ``package.chain[0].chain[1]...`` lands in: submodules first, then re-exports."""
        current = package
        for attr in chain:
            target = self.definer(current, attr)
            if target == current or f"{current}.{attr}" != target:
                return target
            current = target
        return current


# -- Rust -----------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<comment>//[^\n]*|/\*)
    | (?P<raw>b?r(?P<hashes>\#*)")
    | (?P<string>b?"(?:\\.|[^"\\])*")
    | (?P<char>b?'(?:\\.|[^'\\])')
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def strip_rust(text: str) -> str:
    """``text`` with comments and string and char literals blanked (newlines kept, so line numbers hold)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        assert m is not None
        if m.group("comment") == "/*":
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            end = j
        elif m.group("raw"):
            close = '"' + m.group("hashes")
            found = text.find(close, m.end())
            end = len(text) if found < 0 else found + len(close)
        elif m.group("other"):
            out.append(m.group("other"))
            i = m.end()
            continue
        else:
            end = m.end()
        out.append(re.sub(r"[^\n]", " ", text[i:end]))
        i = end
    return "".join(out)


@dataclass
class RustModule:
    path: tuple[str, ...]
    """``()`` is the crate root; ``("engine",)`` is ``crate::engine``."""
    file: Path
    text: str
    """This module's own code (stripped), with inline child modules blanked out."""
    line0: int
    """The line of ``file`` that ``text`` starts at."""
    imports: list[tuple[str, ...]] = field(default_factory=list)
    """Paths (absolute in the crate) this module brings into scope by ``use`` (``pub`` or not: a child module sees
    both through ``super::``), the last part the name."""


_MOD = re.compile(r"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")
_USE = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);")
_PATH = re.compile(r"\b(?:crate|super|self)(?:\s*::\s*\w+)+")


def _block_end(text: str, open_at: int) -> int:
    """The index just past the ``}`` that closes the ``{`` at ``open_at``."""
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def _use_leaves(tree: str) -> Iterator[list[str]]:
    """``a::{b, c::{d as e, *}}`` -> ``[a, b]``, ``[a, c, d]``, ``[a, c, *]``."""
    tree = re.sub(r"\s*(::|[{},])\s*", r"\1", tree.strip())
    if "{" not in tree:
        leaf = tree.split()[0] if tree.split() else ""  # drops "as name"
        yield [p for p in leaf.split("::") if p]
        return
    brace = tree.index("{")
    prefix = [p for p in tree[:brace].split("::") if p]
    inner = tree[brace + 1 : tree.rindex("}")]
    depth, start = 0, 0
    for j, ch in enumerate(inner + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            part, start = inner[start:j], j + 1
            if part.strip():
                for leaf in _use_leaves(part):
                    yield prefix + leaf


def _absolute(
    here: tuple[str, ...], parts: list[str], modules: Iterable[tuple[str, ...]] = ()
) -> tuple[str, ...] | None:
    """A path as written in module ``here``, absolute in the crate; None for a path into another crate. A path that
    starts with a child module of ``here`` (``use child::X``, as ``use`` trees may write it) is relative to ``here``."""
    if parts and parts[0] not in ("crate", "self", "super") and (*here, parts[0]) in modules:
        parts = ["self", *parts]
    if not parts or parts[0] not in ("crate", "self", "super"):
        return None
    base = [] if parts[0] == "crate" else list(here)
    rest = parts[1:]
    if parts[0] == "super":
        rest = parts
        while rest and rest[0] == "super":
            if not base:
                return None
            base.pop()
            rest = rest[1:]
    return tuple(base + [p for p in rest if p not in ("self", "*")])


class RustGraph:
    def __init__(self, src: Path) -> None:
        self.src = src
        self.modules: dict[tuple[str, ...], RustModule] = {}
        root = src / "lib.rs"
        if root.is_file():
            self._load((), root, src, 1, strip_rust(root.read_text(encoding="utf-8")))
        for module in self.modules.values():
            module.imports = [path for path, _, _, glob in self._uses(module) if path and not glob]

    def _load(self, path: tuple[str, ...], file: Path, directory: Path, line0: int, text: str) -> None:
        """Module ``path``: ``text`` from line ``line0`` of ``file``; its ``mod x;`` files are in ``directory``."""
        own = text
        children: list[tuple[str, int, str | None]] = []
        skip_to = 0
        for m in _MOD.finditer(text):
            if m.start() < skip_to:
                continue  # a module inside an inline child: the child's own
            if m.group(2) == ";":
                children.append((m.group(1), 0, None))
                continue
            end = _block_end(text, m.end() - 1)
            skip_to = end
            children.append((m.group(1), line0 + text.count("\n", 0, m.end()), text[m.end() : end - 1]))
            own = own[: m.end()] + _blank(text[m.end() : end - 1]) + own[end - 1 :]
        self.modules[path] = RustModule(path, file, own, line0)
        for name, line, body in children:
            if body is not None:
                self._load((*path, name), file, directory / name, line, body)
                continue
            for candidate in (directory / f"{name}.rs", directory / name / "mod.rs"):
                if candidate.is_file():
                    code = strip_rust(candidate.read_text(encoding="utf-8"))
                    self._load((*path, name), candidate, directory / name, 1, code)
                    break

    def _uses(self, module: RustModule) -> Iterator[tuple[tuple[str, ...], bool, int, bool]]:
        """(absolute path, ``pub``, line, a glob) for each leaf of each ``use`` tree in the module's own code."""
        for m in _USE.finditer(module.text):
            line = module.line0 + module.text.count("\n", 0, m.start())
            for leaf in _use_leaves(m.group(2)):
                resolved = _absolute(module.path, leaf, self.modules)
                if resolved is not None:
                    yield resolved, bool(m.group(1)), line, leaf[-1:] == ["*"]

    def target(self, path: tuple[str, ...], seen: frozenset[tuple[str, ...]] = frozenset()) -> tuple[str, ...]:
        """The module a crate path lands in: its longest module prefix, a name brought in there by ``use`` followed
        to where it is defined."""
        prefix = path
        while prefix not in self.modules:
            prefix = prefix[:-1]
        if len(prefix) == len(path) or path in seen:
            return prefix
        name = path[len(prefix)]
        for imported in self.modules[prefix].imports:
            if imported[-1] == name and imported != path:
                return self.target(imported, seen | {path})
        return prefix

    def edges(self) -> list[Edge]:
        found: list[Edge] = []
        for module in self.modules.values():
            rel = _shown(module.file)
            uses = [(m.start(), m.end()) for m in _USE.finditer(module.text)]
            for path, public, line, _ in self._uses(module):
                if not public:
                    found.append(self._edge(module, path, f"{rel}:{line} use {_rust_name(path)}"))
            for m in _PATH.finditer(module.text):
                if any(start <= m.start() < end for start, end in uses):
                    continue  # counted with its use tree
                line = module.line0 + module.text.count("\n", 0, m.start())
                written = re.sub(r"\s+", "", m.group(0))
                path = _absolute(module.path, written.split("::"))
                if path is not None:
                    found.append(self._edge(module, path, f"{rel}:{line} {written}"))
        return [e for e in found if e.source != e.target]

    def _edge(self, module: RustModule, path: tuple[str, ...], where: str) -> Edge:
        return Edge(_rust_name(module.path), _rust_name(self.target(path)), where)


def _rust_name(path: tuple[str, ...]) -> str:
    return "::".join(("crate", *path))


# -- report ---------------------------------------------------------------------------------------------------------


def report(title: str, nodes: Iterable[str], edges: list[Edge]) -> int:
    found = cycles(nodes, edges)
    if not found:
        print(f"{title}: no import cycles", file=sys.stderr)
        return 0
    print(f"{title}: {len(found)} import cycle(s)", file=sys.stderr)
    for component in found:
        members = set(component)
        print(f"  cycle: {' <-> '.join(component)}", file=sys.stderr)
        shown: set[tuple[str, str, str]] = set()
        for e in sorted(edges, key=lambda e: (e.source, e.target, e.where)):
            key = (e.source, e.target, e.where)
            if e.source in members and e.target in members and key not in shown:
                shown.add(key)
                print(f"    {e.source} -> {e.target}   ({e.where})", file=sys.stderr)
    return len(found)


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", type=Path, default=ROOT / "python" / "rusty_genius", help="the Python package")
    parser.add_argument("--rust", type=Path, default=ROOT / "rust" / "cortex" / "src", help="a crate's src/")
    args = parser.parse_args(argv)
    python = PyGraph(args.python)
    rust = RustGraph(args.rust)
    bad = report(f"python ({_shown(args.python)}, {len(python.modules)} modules)", python.modules, python.edges())
    bad += report(
        f"rust ({_shown(args.rust)}, {len(rust.modules)} modules)", (_rust_name(p) for p in rust.modules), rust.edges()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
