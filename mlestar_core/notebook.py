"""A finished run's final solution as a Jupyter notebook (issue 13, hand-off).

    python -m mlestar_core export-notebook RUN_ID -o solution.ipynb

One code cell per fenced block of the final script (its preamble, the imports and settings before the first
block, is the cell before them), the run's story in markdown cells before the code (story.py), and a first code
cell that checks `./input/` and writes the engine's `folds.csv` there when it is missing: scripts written by an
LLM brain read `./input/folds.csv` unconditionally, and a notebook must run top to bottom in a folder that holds
only the task's files. The code cells, joined, are the script exactly as it ran, so the notebook computes what the
run's full-data run computed.

Only a finished run has a final solution: any other run raises `kept.RunNotUsable` (the CLI exits 2), rather than
handing off a script the run has not chosen.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zlib
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from . import story
from .hardening import scrub
from .kept import FinishedRun, finished_run
from .script import ScriptError, blocks
from .store import Store

FOLDS = "folds.csv"
# Above this (compressed) the folds are not embedded: the cell then asks for the bundle's folds.csv instead
# (a notebook of tens of MB opens badly); a script written by the offline brain makes the same folds itself.
MAX_EMBEDDED_FOLDS = 4 * 2**20
_CHUNK = 100


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def solution_parts(code: str) -> list[tuple[str, str]]:
    """(block name or "" for the preamble, source) in order; joined, the sources are `code` exactly.

    A part runs from its block's start fence to the next block's start fence, so text between two blocks stays
    with the block before it and text after the last block with the last one. A script without fences (or with
    broken ones) is one part."""
    try:
        found = blocks(code)
    except ScriptError:
        found = []
    if not found:
        return [("", code)]
    starts = [code.rfind("\n", 0, b.start - 1) + 1 for b in found]  # the start fence's line
    parts = [("", code[: starts[0]])] if code[: starts[0]].strip() else []
    if parts == [] and starts[0] > 0:  # blank lines only before the first fence: keep them, exactly
        starts[0] = 0
    ends = starts[1:] + [len(code)]
    parts += [(b.name, code[s:e]) for b, s, e in zip(found, starts, ends, strict=True)]
    return parts


def _cell_source(text: str) -> str:
    # A cell's trailing newline is not shown; the metadata keeps how many were cut so the script can be rebuilt.
    return text.rstrip("\n")


def script_of(nb: nbformat.NotebookNode) -> str:
    """The solution's code back from the notebook's solution cells (their metadata says which they are)."""
    out = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("mlestar", {})
        if cell.cell_type == "code" and meta.get("part") in ("preamble", "block"):
            out.append(cell.source + "\n" * int(meta.get("trailing_newlines", 0)))
    return "".join(out)


def inputs_cell(fr: FinishedRun, files: dict[str, str]) -> str:
    """The first code cell: the task's files must be in ./input/ (a different copy is only warned about), and
    the engine's folds.csv is written there when missing (embedded, compressed)."""
    folds_path = fr.data.full_dir / FOLDS
    lines = [
        "# Inputs: the solution reads ./input/ relative to the folder this notebook runs in.",
        "import base64, hashlib, os, zlib  # noqa: E401",
        "",
        "RUN_FILES = {  # the run's copies of the task's files: name -> SHA-256",
        *[f"    {name!r}: {digest!r}," for name, digest in files.items()],
        "}",
        "",
        "",
        "def _sha256(path):",
        "    h = hashlib.sha256()",
        "    with open(path, 'rb') as f:",
        "        for chunk in iter(lambda: f.read(1 << 20), b''):",
        "            h.update(chunk)",
        "    return h.hexdigest()",
        "",
        "",
        "_missing = [n for n in RUN_FILES if n != 'folds.csv' and n != 'description.md'",
        "            and not os.path.isfile(os.path.join('input', n))]",
        "if _missing:",
        "    raise FileNotFoundError(f\"put the task's files under ./input/ (missing: {', '.join(_missing)}; \"",
        "                            f'working folder: {os.getcwd()})')",
        "for _name, _digest in RUN_FILES.items():",
        "    _path = os.path.join('input', _name)",
        "    if os.path.isfile(_path) and _sha256(_path) != _digest:",
        "        print(f'warning: input/{_name} is not the file the run used (SHA-256 differs): scores and the '",
        "              'submission will differ from the run\\'s')",
    ]
    if folds_path.is_file():
        packed = base64.b64encode(zlib.compress(folds_path.read_bytes(), 9)).decode("ascii")
        if len(packed) <= MAX_EMBEDDED_FOLDS:
            chunks = [packed[i:i + _CHUNK] for i in range(0, len(packed), _CHUNK)]
            lines += [
                "",
                "# The engine's folds over all training rows (repeat,row,fold), as the run's full-data run read them.",
                "_FOLDS = (",
                *[f"    {c!r}" for c in chunks],
                ")",
                "if not os.path.isfile(os.path.join('input', 'folds.csv')):",
                "    with open(os.path.join('input', 'folds.csv'), 'wb') as _f:",
                "        _f.write(zlib.decompress(base64.b64decode(_FOLDS)))",
                "    print('wrote input/folds.csv (the engine folds of the run)')",
            ]
        else:
            lines += ["", "if not os.path.isfile(os.path.join('input', 'folds.csv')):",
                      "    print('warning: no input/folds.csv: copy it from the reproduction bundle '",
                      "          '(data/folds.csv); a script that reads it will fail without it')"]
    if "__file__" in fr.code:  # a notebook has no __file__; the script's own folder is the working folder
        lines += ["", "__file__ = os.path.abspath('solution.py')"]
    lines += ["print('inputs:', ', '.join(sorted(os.listdir('input'))))"]
    return "\n".join(lines)


def run_files(fr: FinishedRun) -> dict[str, str]:
    """name -> SHA-256 of the files the final solution's full-data run read (the run's copy of the task)."""
    folder = fr.data.full_dir
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


def notebook_for(store: Store, fr: FinishedRun, files: dict[str, str]) -> nbformat.NotebookNode:
    higher = fr.task.higher_is_better
    cells: list[Any] = [new_markdown_cell(story.header(store, fr, "solution.ipynb"))]
    cells += [new_markdown_cell(text) for text in story.story(store, fr)]
    cells.append(new_markdown_cell("## The code\n\nFirst the inputs, then the script: its settings, then one cell per "
                                   "block, in the order they run."))
    cells.append(new_code_cell(inputs_cell(fr, files), metadata={"mlestar": {"part": "inputs"}}))
    for name, source in solution_parts(fr.code):
        meta = {"part": "block" if name else "preamble", "block": name or None,
                "trailing_newlines": len(source) - len(source.rstrip("\n"))}
        if name:
            cells.append(new_markdown_cell(story.block_note(store, fr.run_id, name, higher)))
        cells.append(new_code_cell(_cell_source(source), metadata={"mlestar": meta}))
    for cell in cells:  # a secret the run saw must not leave with the hand-off
        cell.source = scrub(cell.source)
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": ".".join(map(str, sys.version_info[:3]))},
        "mlestar": {"run_id": fr.run_id, "script_id": fr.script_id,
                    "validation_score": fr.summary.get("validation_score"),
                    "holdout_score": fr.summary.get("holdout_score")},
    })
    nbformat.validate(nb)
    return nb


def build_notebook(store: Store, run_id: str) -> nbformat.NotebookNode:
    """The notebook of a finished run; RunNotUsable when the run has no final solution."""
    fr = finished_run(store, run_id)
    return notebook_for(store, fr, run_files(fr))


def notebook_json(nb: nbformat.NotebookNode) -> bytes:
    return scrub(nbformat.writes(nb)).encode("utf-8")


def notebook_bytes(store: Store, run_id: str) -> bytes:
    """The .ipynb file's bytes (what the download and `export-notebook` write)."""
    return notebook_json(build_notebook(store, run_id))

