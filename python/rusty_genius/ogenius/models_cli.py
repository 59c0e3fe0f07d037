"""``ogenius download``, ``list``, ``import`` and ``rm``: the model commands (facecrab's CLI).

Output discipline: what a script wants (a path, the table) on stdout; progress bars, notices and questions on
stderr.
"""

from __future__ import annotations

import argparse
import sys

from rusty_genius.core.errors import GeniusError
from rusty_genius.ogenius.friendly import unknown_model
from rusty_genius.ogenius.progress import ProgressBars

# facecrab (huggingface_hub, filelock) is imported inside each command: `ogenius --help`, `chat --engine pinky`
# and `teaser` should not pay for it.


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def download(args: argparse.Namespace) -> int:
    from rusty_genius import facecrab

    bars = ProgressBars()
    try:
        spec = facecrab.ensure_model(facecrab.resolve_model(args.model, args.quant), on_progress=bars)
    except GeniusError as err:
        raise unknown_model(err, args.model) from None
    finally:
        bars.close()
    print(f"{spec.name}: {spec.gguf_repo or 'local'} {spec.quant} ({_size(spec.size)})", file=sys.stderr)
    print(spec.path)
    return 0


def list_models(args: argparse.Namespace) -> int:
    from rusty_genius import facecrab

    models = facecrab.Registry().models()
    if not models:
        print(f"no models yet: try 'ogenius download {facecrab.default_model().name}'", file=sys.stderr)
        return 0
    rows = [("NAME", "REPO", "QUANT", "SIZE", "PATH")]
    for name, spec in sorted(models.items()):
        path = str(spec.paths[0]) if spec.paths else "-"
        rows.append((name, spec.gguf_repo or "(imported)", spec.quant or "-", _size(spec.size), path))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    return 0


def import_model(args: argparse.Namespace) -> int:
    from rusty_genius import facecrab

    spec = facecrab.import_model(args.path, args.name)
    print(
        f"registered {spec.name} ({spec.quant or 'unknown quant'}, {_size(spec.size)}) at {spec.path}", file=sys.stderr
    )
    return 0


def remove(args: argparse.Namespace) -> int:
    from rusty_genius import facecrab

    spec = facecrab.find_model(args.name)
    if spec is None:
        known = ", ".join(sorted(facecrab.Registry().models())) or "none"
        print(f"ogenius: no model named {args.name!r} (registered: {known})", file=sys.stderr)
        return 2
    delete = False
    if spec.owned and spec.paths:
        if args.yes:
            delete = True
        elif sys.stdin.isatty():
            answer = input(f"delete {len(spec.paths)} file(s), {_size(spec.size)}? [y/N] ")
            delete = answer.strip().lower() in ("y", "yes")
        else:
            print("not deleting its files without --yes (stdin is not a terminal)", file=sys.stderr)
    removed = facecrab.remove_model(spec.name, delete_files=delete)
    kept = f"; kept {'its files' if spec.owned else 'the file it does not own'}" if removed.kept else ""
    print(f"removed {spec.name}{kept}", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("download", help="fetch a model from Hugging Face (verified) and register it")
    p.add_argument("model", nargs="?", help="a repo id (owner/name) or an alias; default: the embedded default")
    p.add_argument("--quant", help="quantization, e.g. Q4_K_M (the default), Q8_0")
    p.set_defaults(run=download)
    p = commands.add_parser("list", help="list registered models")
    p.set_defaults(run=list_models)
    p = commands.add_parser("import", help="register a GGUF file that is already on disk")
    p.add_argument("path")
    p.add_argument("--name", required=True, help="the name to use it by")
    p.set_defaults(run=import_model)
    p = commands.add_parser("rm", help="unregister a model (and delete files rusty-genius downloaded, if you agree)")
    p.add_argument("name")
    p.add_argument("-y", "--yes", action="store_true", help="delete owned files without asking")
    p.set_defaults(run=remove)
