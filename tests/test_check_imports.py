"""scripts/check_imports.py: the import-cycle gate, on small trees written here (its rules are in its header)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.pinky

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_imports.py"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def check(tmp_path: Path, python: dict[str, str], rust: dict[str, str] | None = None) -> tuple[int, str]:
    py = write(tmp_path / "py", python) / "pkg"
    rs = write(tmp_path / "rs", rust or {"lib.rs": "pub mod a;\n", "a.rs": "pub struct A;\n"})
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--python", str(py), "--rust", str(rs)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return out.returncode, out.stderr


FACADE = {
    "pkg/__init__.py": "from pkg.a import A\nfrom pkg.b import B\n",
    "pkg/a.py": "class A: ...\n",
    "pkg/b.py": "from pkg import A\n\nclass B(A): ...\n",
}


def test_the_facade_pattern_is_not_a_cycle(tmp_path: Path) -> None:
    code, err = check(tmp_path, FACADE)
    assert code == 0, err
    assert "python (" in err and "no import cycles" in err


def test_a_lazy_import_through_the_facade_is_a_cycle(tmp_path: Path) -> None:
    files = {**FACADE, "pkg/a.py": "class A:\n    def b(self):\n        from pkg import B\n        return B\n"}
    code, err = check(tmp_path, files)
    assert code == 1
    assert "cycle: pkg.a <-> pkg.b" in err
    assert "pkg.a -> pkg.b" in err and "a.py:3 from pkg import B" in err


def test_a_name_the_init_defines_itself_keeps_the_edge(tmp_path: Path) -> None:
    files = {
        **FACADE,
        "pkg/__init__.py": "from pkg.b import B\n\nVERSION = 1\n",
        "pkg/b.py": "from pkg import VERSION\n",
    }
    code, err = check(tmp_path, files)
    assert code == 1 and "cycle: pkg <-> pkg.b" in err


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    files = {
        **FACADE,
        "pkg/a.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from pkg.b import B
            else:
                import json
            class A: ...
            """,
    }
    assert check(tmp_path, files)[0] == 0


def test_a_subpackage_imported_from_outside_runs_its_init(tmp_path: Path) -> None:
    # The shape ogenius had: cli imports the serve package, whose cli imported the top-level cli back (lazily).
    files = {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from pkg.serve import add\n",
        "pkg/serve/__init__.py": "from pkg.serve.cli import add\n",
        "pkg/serve/cli.py": "def add(): ...\ndef main():\n    from pkg.cli import run\n",
    }
    code, err = check(tmp_path, files)
    assert code == 1 and "cycle: pkg.cli <-> pkg.serve <-> pkg.serve.cli" in err
    files["pkg/serve/cli.py"] = "def add(): ...\n"
    files["pkg/serve/__main__.py"] = "from pkg.cli import run\n"  # the entry point: nothing imports it
    assert check(tmp_path, files)[0] == 0


def test_rust_modules(tmp_path: Path) -> None:
    rust = {
        "lib.rs": "pub mod a;\npub mod b;\npub use a::A;\n",
        "a.rs": """\
            //! Mentions crate::b::B in a comment only, and in a string: "crate::b::B".
            pub struct A;
            #[cfg(test)]
            mod tests {
                use super::*;
                use crate::b::B;
            }
            """,
        "b.rs": "use crate::{A, a::{self as other}};\npub struct B;\n",
    }
    code, err = check(tmp_path, FACADE, rust)
    assert code == 0, err
    rust["a.rs"] = "pub struct A;\nfn f() -> usize {\n    std::mem::size_of::<super::b::B>()\n}\n"
    code, err = check(tmp_path, FACADE, rust)
    assert code == 1
    assert "cycle: crate::a <-> crate::b" in err
    assert "crate::a -> crate::b" in err and "a.rs:3 super::b::B" in err
    assert "crate::b -> crate::a" in err and "use crate::A" in err, "the re-export is followed to its module"
