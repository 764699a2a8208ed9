#!/usr/bin/env python3
"""Reproduce an MLE-STAR run's submission from its hand-off bundle: the one command.

    python reproduce.py              # a fresh virtualenv (./.venv) with requirements.txt, then the solution
    python reproduce.py --no-venv    # the Python running this (it must have the packages of requirements.txt)
    python reproduce.py --data DIR   # the task's files are in DIR (when the bundle could not include them)

It checks every data file against the SHA-256 in MANIFEST.json, runs solution.py in ./reproduction/ with the
task's files under ./input/ and the environment the run used (seeds included), and compares the submission it
writes with the run's (`submission.csv`): identical, or equal within a float tolerance. Exit status: 0 reproduced,
1 not reproduced, 2 the data is missing or not the run's, 3 the environment or the solution failed.

Standard library only: this file is copied into every bundle (mlestar_core/bundle.py) and runs without MLE-STAR.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPRODUCED, DIFFERS, BAD_DATA, FAILED = 0, 1, 2, 3
SCORE_LINE = re.compile(r"^Final Validation Performance:\s*(\S+)\s*$", re.M | re.I)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_data(manifest: dict, folders: list[Path]) -> tuple[dict[str, Path], list[str]]:
    """Each data file's path (the first folder holding it) and the problems: missing files, other contents."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name, info in manifest["data"]["files"].items():
        path = next((f / name for f in folders if (f / name).is_file()), None)
        if path is None:
            problems.append(f"{name}: missing (looked in {', '.join(str(f) for f in folders)})")
            continue
        digest = sha256(path)
        if digest != info["sha256"]:
            problems.append(f"{path}: SHA-256 {digest[:16]}… but the run used {info['sha256'][:16]}…: this is not "
                            "the data the run was made from")
            continue
        found[name] = path
    return found, problems


def interpreter(here: Path, use_venv: bool) -> str:
    """The Python that runs the solution: a virtualenv with the pinned requirements, or this one."""
    if not use_venv:
        return sys.executable
    env_dir = here / ".venv"
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"creating a virtualenv in {env_dir} …", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    print("installing requirements.txt (pinned) …", flush=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r",
                           str(here / "requirements.txt")])
    if done.returncode != 0:
        raise RuntimeError("pip could not install requirements.txt (no network? run again with --no-venv and a "
                           "Python that has those packages)")
    return str(python)


def parse_score(stdout: str) -> float | None:
    found = SCORE_LINE.findall(stdout)
    try:
        return float(found[-1]) if found else None
    except ValueError:
        return None


def close(a: float, b: float, rtol: float, atol: float) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b))


def compare_csv(expected: Path, got: Path, rtol: float, atol: float) -> tuple[bool, str]:
    """(same, how): byte-identical, equal within the tolerance cell by cell, or where they first differ."""
    if expected.read_bytes() == got.read_bytes():
        return True, "identical to the run's submission"
    with open(expected, newline="", encoding="utf-8") as f:
        want = list(csv.reader(f))
    with open(got, newline="", encoding="utf-8") as f:
        have = list(csv.reader(f))
    if not want or not have or want[0] != have[0]:
        return False, f"other columns: {have[0] if have else []} instead of {want[0] if want else []}"
    if len(want) != len(have):
        return False, f"{len(have) - 1} rows instead of {len(want) - 1}"
    worst, differing = 0.0, 0
    for i, (row_w, row_h) in enumerate(zip(want[1:], have[1:], strict=True), start=1):
        if len(row_w) != len(row_h):
            return False, f"row {i} has {len(row_h)} cells instead of {len(row_w)}"
        for col, a, b in zip(want[0], row_w, row_h, strict=True):
            if a == b:
                continue
            try:
                x, y = float(a), float(b)
            except ValueError:
                return False, f"row {i}, column {col!r}: {b!r} instead of {a!r}"
            if not close(x, y, rtol, atol):
                return False, f"row {i}, column {col!r}: {b} instead of {a} (beyond rtol={rtol:g}, atol={atol:g})"
            worst, differing = max(worst, abs(x - y)), differing + 1
    return True, (f"equal to the run's submission within rtol={rtol:g}, atol={atol:g} ({differing} cell(s) differ "
                  f"in the last digits, at most by {worst:.3g})")


def run(args: argparse.Namespace) -> int:
    here = Path(__file__).resolve().parent
    manifest = json.loads((here / "MANIFEST.json").read_text(encoding="utf-8"))
    print(f"MLE-STAR run {manifest['run_id']} ({manifest['run_name']}): reproducing its submission", flush=True)
    folders = [Path(args.data).resolve()] if args.data else []
    folders.append(here / "data")
    files, problems = find_data(manifest, folders)
    if problems:
        print("error: the data is not the run's:\n  " + "\n  ".join(problems), file=sys.stderr)
        if not manifest["data"].get("included", True):
            print(f"the bundle does not include the task's files: {manifest['data'].get('note', '')}", file=sys.stderr)
        print("VERDICT: NOT REPRODUCED — the data check failed (nothing was run)")
        return BAD_DATA
    print(f"data: {len(files)} file(s), SHA-256 as in the run", flush=True)
    want = manifest.get("python", "")
    have = ".".join(map(str, sys.version_info[:2]))
    if want and not want.startswith(have + ".") and args.no_venv:
        print(f"warning: the run used Python {want}, this is {sys.version.split()[0]}", flush=True)
    try:
        python = interpreter(here, not args.no_venv)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("VERDICT: NOT REPRODUCED — the environment could not be made")
        return FAILED

    work = here / "reproduction"
    shutil.rmtree(work, ignore_errors=True)
    (work / "input").mkdir(parents=True)
    for name, path in files.items():
        shutil.copyfile(path, work / "input" / name)
    shutil.copyfile(here / "solution.py", work / "solution.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLESTAR_")}  # only the run's own settings
    env.update(manifest["env"])
    seeds = "; ".join(f"{k}: {v}" for k, v in manifest["seeds"].items())
    print(f"running solution.py in {work} with the run's environment (MANIFEST.json env) and seeds ({seeds})",
          flush=True)
    try:
        done = subprocess.run([python, "solution.py"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"VERDICT: NOT REPRODUCED — solution.py ran longer than {args.timeout:g} s")
        return FAILED
    (work / "stdout.txt").write_text(done.stdout, encoding="utf-8")
    (work / "stderr.txt").write_text(done.stderr, encoding="utf-8")
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        print(f"solution.py failed (exit {done.returncode}):\n{tail}", file=sys.stderr)
        print("VERDICT: NOT REPRODUCED — the solution failed (reproduction/stderr.txt has its output)")
        return FAILED

    tol = manifest["compare"]
    printed, expected_score = parse_score(done.stdout), manifest["scores"].get("printed_full")
    if printed is not None:
        same = expected_score is not None and close(printed, expected_score, tol["rtol"], tol["atol"])
        print(f"Final Validation Performance: {printed!r} (the run's full-data run printed {expected_score!r}"
              f"{': the same' if same else ''})")
    sub = manifest.get("submission")
    if not sub and "submission.csv" in manifest["data"].get("left_out", {}):
        print("VERDICT: NOT REPRODUCED — the run's submission is not in the bundle "
              f"({manifest['data']['left_out']['submission.csv']}): nothing to compare with")
        return DIFFERS
    if not sub:  # a task without a test file: the printed score is all there is to compare
        ok = printed is not None and expected_score is not None and close(printed, expected_score, tol["rtol"],
                                                                          tol["atol"])
        print(f"VERDICT: {'REPRODUCED' if ok else 'NOT REPRODUCED'} — the task has no submission; the printed score "
              f"{'matches' if ok else 'does not match'} the run's")
        return REPRODUCED if ok else DIFFERS
    new = work / "submission.csv"
    if not new.is_file():
        print("VERDICT: NOT REPRODUCED — solution.py wrote no submission.csv")
        return DIFFERS
    ok, how = compare_csv(here / sub["file"], new, tol["rtol"], tol["atol"])
    print(f"VERDICT: {'REPRODUCED' if ok else 'NOT REPRODUCED'} — reproduction/submission.csv is {how}"
          if ok else f"VERDICT: NOT REPRODUCED — reproduction/submission.csv differs: {how}")
    return REPRODUCED if ok else DIFFERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reproduce this MLE-STAR run's submission (see README.md).")
    parser.add_argument("--no-venv", action="store_true", help="use this Python instead of a fresh virtualenv")
    parser.add_argument("--data", help="folder holding the task's files (default: the bundle's data/)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the solution is stopped")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
