"""Hand-off (issue 13): a finished run's notebook runs top to bottom in a folder holding ./input/, and its bundle
reproduces the submission with one command, refusing data that is not the run's."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import FinishedRun, RunBuilder

from mlestar_core import cli, notebook, script, story
from mlestar_core.bundle import build_bundle, folder_name, requirements
from mlestar_core.kept import RunNotUsable, finished_run
from mlestar_core.reproduce_bundle import compare_csv
from mlestar_core.views import history as history_view

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def run(finished_run_store: FinishedRun) -> FinishedRun:
    return finished_run_store


@pytest.fixture(scope="module")
def nb(run: FinishedRun) -> nbformat.NotebookNode:
    return notebook.build_notebook(run.store, run.run_id)


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def full_dir(run: FinishedRun) -> Path:
    return finished_run(run.store, run.run_id).data.full_dir


def run_submission(run: FinishedRun) -> bytes:
    return Path(run.store.step_result(run.run_id, "final")[1]["submission"]).read_bytes()


def unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(into)
    return next(into.iterdir())


# -- the notebook ---------------------------------------------------------------------------------------------


def test_notebook_cells_are_the_solution_blocks(run: FinishedRun, nb: nbformat.NotebookNode) -> None:
    nbformat.validate(nb)
    code = finished_run(run.store, run.run_id).code
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert cells[0].metadata["mlestar"]["part"] == "inputs"
    assert cells[1].metadata["mlestar"]["part"] == "preamble" and "import" in cells[1].source
    blocks = [c for c in cells if c.metadata["mlestar"]["part"] == "block"]
    assert [c.metadata["mlestar"]["block"] for c in blocks] == script.block_names(code)
    for cell in blocks:  # one cell per fenced block, fences and body included
        name = cell.metadata["mlestar"]["block"]
        assert cell.source.startswith(f"# [block: {name}]")
        assert script.get_block(code, name).rstrip("\n") in cell.source
    assert notebook.script_of(nb) == code  # the cells, joined, are the script as it ran


def test_notebook_tells_the_story_with_the_stores_numbers(run: FinishedRun, nb: nbformat.NotebookNode) -> None:
    text = markdown(nb)
    store, rid = run.store, run.run_id
    summary = store.step_result(rid, "final")[1]
    for value in (summary["validation_score"], summary["holdout_score"], summary["baseline_score"],
                  store.finished_execution(summary["final_script_id"], "full")["score"]):
        assert story.fmt(value) in text
    for card in store.table("model_cards", rid):
        assert card["name"] in text
    scores = {e["script_id"]: e["score"] for e in store.table("executions", rid) if e["purpose"] == "search"}
    for s in store.table("scripts", rid):
        if s["role"] == "initial":
            assert f"| #{s['id']} |" in text and story.fmt(scores[s["id"]]) in text
    ablations = store.table("ablations", rid)
    assert ablations and all(f"`{a['block']}`" in text and story.fmt(a["delta"]) in text for a in ablations)
    kept = [a for a in store.table("attempts", rid) if a["kept"]]
    assert kept and all(story.fmt(a["score"]) in text and story.fmt(a["score"] - a["baseline"]) in text for a in kept)
    rounds = store.table("ensemble_rounds", rid)
    assert rounds and all(story.fmt(r["score"]) in text and r["strategy"] in text for r in rounds)
    header = nb.cells[0].source
    assert "./input/" in header and "train.csv" in header and "test.csv" in header and "MLESTAR_SUBMIT" in header


def test_notebook_runs_top_to_bottom_and_writes_the_runs_submission(run: FinishedRun, nb: nbformat.NotebookNode,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient

    for name in [k for k in os.environ if k.startswith("MLESTAR_")]:
        monkeypatch.delenv(name)  # the kernel inherits this environment: run as a user would
    folder = tmp_path / "handoff"
    (folder / "input").mkdir(parents=True)
    for p in full_dir(run).iterdir():  # the task's files only: the first cell writes folds.csv
        if p.name != "folds.csv":
            shutil.copyfile(p, folder / "input" / p.name)
    (folder / "solution.ipynb").write_bytes(notebook.notebook_json(nb))
    executed = nbformat.read(folder / "solution.ipynb", as_version=4)
    # jupyter_client starts the "python3" kernel spec's `python` as sys.executable: this venv's interpreter
    nbclient.NotebookClient(executed, kernel_name="python3", timeout=240,
                            resources={"metadata": {"path": str(folder)}}).execute()
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    summary = run.store.step_result(run.run_id, "final")[1]
    expected = run.store.finished_execution(summary["final_script_id"], "full")["score"]
    assert script.parse_score(printed) == pytest.approx(expected, rel=1e-9)
    assert (folder / "input" / "folds.csv").read_bytes() == (full_dir(run) / "folds.csv").read_bytes()
    assert (folder / "submission.csv").read_bytes() == run_submission(run)


def test_unfinished_run_has_no_notebook(run_builder: RunBuilder) -> None:
    rid = run_builder.run("running")
    with pytest.raises(RunNotUsable, match="not finished"):
        notebook.build_notebook(run_builder.store, rid)


def test_solution_parts_rebuild_any_script() -> None:
    fenced = "import os\n\n# [block: a]\nx = 1\n# [end block: a]\n\ny = 2\n# [block: b]\nprint(x)\n# [end block: b]\n"
    parts = notebook.solution_parts(fenced)
    assert [n for n, _ in parts] == ["", "a", "b"] and "".join(s for _, s in parts) == fenced
    assert notebook.solution_parts("print(1)\n") == [("", "print(1)\n")]  # no fences: one cell
    assert "".join(s for _, s in notebook.solution_parts("\n# [block: a]\nx\n# [end block: a]\n")) == \
        "\n# [block: a]\nx\n# [end block: a]\n"


# -- the bundle -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(run: FinishedRun) -> bytes:
    return build_bundle(run.store, run.run_id)


def test_bundle_holds_what_reproducing_needs_and_no_holdout_answers(run: FinishedRun, bundle: bytes) -> None:
    top = folder_name(run.run_id)
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        names = set(zf.namelist())
        man = json.loads(zf.read(f"{top}/MANIFEST.json"))
        reqs = zf.read(f"{top}/requirements.txt").decode()
        assert zf.read(f"{top}/submission.csv") == run_submission(run)
        nbformat.validate(nbformat.reads(zf.read(f"{top}/solution.ipynb").decode(), as_version=4))
    for name in ("solution.py", "submission.csv", "report.md", "solution.ipynb", "requirements.txt", "MANIFEST.json",
                 "README.md", "reproduce.py", "reproduce.sh", "data/train.csv", "data/test.csv", "data/folds.csv"):
        assert f"{top}/{name}" in names
    assert not any("holdout" in n or "answers" in n or "/model/" in n for n in names)
    task_files = {p.name: p for p in full_dir(run).iterdir()}
    assert set(man["data"]["files"]) == set(task_files) and man["data"]["included"]
    assert man["data"]["files"]["train.csv"]["sha256"] == notebook.sha256_file(task_files["train.csv"])
    summary = run.store.step_result(run.run_id, "final")[1]
    assert man["scores"]["validation"] == summary["validation_score"]
    assert man["scores"]["holdout"] == summary["holdout_score"]
    assert man["env"]["PYTHONHASHSEED"] == "0" and man["env"]["MLESTAR_SUBMIT"] == "1"
    assert 42 in man["seeds"].values() and man["config"]["seed"] == 42
    import numpy
    import sklearn

    assert f"numpy=={numpy.__version__}" in reqs and f"scikit-learn=={sklearn.__version__}" in reqs
    assert requirements("import os\nimport pandas as pd\n")[0].startswith("pandas==")


def test_bundle_scrubs_secrets(run: FinishedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    # The task's name is in solution.py, report.md and the notebook: as a "secret" it shows every text is scrubbed.
    monkeypatch.setenv("MLESTAR_FAKE_API_KEY", "breast-cancer")
    data = build_bundle(run.store, run.run_id)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            assert b"breast-cancer" not in zf.read(name), name
        assert b"[REDACTED]" in zf.read(f"{folder_name(run.run_id)}/solution.py")


def reproduce(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(list(args), cwd=folder, env=env, capture_output=True, text=True, timeout=240)


def test_the_one_command_reproduces_the_submission(bundle: bytes, tmp_path: Path) -> None:
    folder = unzip(bundle, tmp_path)
    done = reproduce(folder, "sh", "reproduce.sh", "--no-venv")  # python3 on PATH: this venv's
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERDICT: REPRODUCED" in done.stdout and "identical" in done.stdout
    assert "SHA-256 as in the run" in done.stdout
    assert (folder / "reproduction" / "submission.csv").read_bytes() == (folder / "submission.csv").read_bytes()


def test_tampered_or_missing_data_is_refused(bundle: bytes, tmp_path: Path) -> None:
    folder = unzip(bundle, tmp_path)
    train = folder / "data" / "train.csv"
    lines = train.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",", ",9", 1)  # one changed value
    train.write_text("".join(lines))
    done = reproduce(folder, sys.executable, "reproduce.py", "--no-venv")
    assert done.returncode == 2
    assert "train.csv: SHA-256" in done.stderr and "not the data the run was made from" in done.stderr
    assert "VERDICT: NOT REPRODUCED" in done.stdout and not (folder / "reproduction").exists()
    train.unlink()
    done = reproduce(folder, sys.executable, "reproduce.py", "--no-venv")
    assert done.returncode == 2 and "train.csv: missing" in done.stderr


def test_big_data_stays_out_and_is_taken_from_data_dir(run: FinishedRun, tmp_path: Path) -> None:
    folds = (full_dir(run) / "folds.csv").stat().st_size
    folder = unzip(build_bundle(run.store, run.run_id, max_data_bytes=folds + 10), tmp_path)
    man = json.loads((folder / "MANIFEST.json").read_text())
    assert not man["data"]["included"] and "train.csv" in man["data"]["left_out"]
    assert [p.name for p in (folder / "data").iterdir()] == ["folds.csv"]  # the engine's file still rides along
    user_copy = tmp_path / "my-data"
    shutil.copytree(full_dir(run), user_copy, ignore=shutil.ignore_patterns("folds.csv"))
    done = reproduce(folder, sys.executable, "reproduce.py", "--no-venv")
    assert done.returncode == 2 and "does not include the task's files" in done.stderr
    done = reproduce(folder, sys.executable, "reproduce.py", "--no-venv", "--data", str(user_copy))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERDICT: REPRODUCED" in done.stdout


def test_compare_csv_tolerance(tmp_path: Path) -> None:
    want, got = tmp_path / "want.csv", tmp_path / "got.csv"
    want.write_text("id,p\n1,0.5\n2,0.25\n")
    got.write_text("id,p\n1,0.5000000001\n2,0.25\n")
    ok, how = compare_csv(want, got, 1e-6, 1e-9)
    assert ok and "within" in how
    got.write_text("id,p\n1,0.51\n2,0.25\n")
    ok, how = compare_csv(want, got, 1e-6, 1e-9)
    assert not ok and "row 1, column 'p'" in how
    got.write_text("id,p\n1,0.5\n")
    assert compare_csv(want, got, 1e-6, 1e-9) == (False, "1 rows instead of 2")


# -- the CLI and the History page ------------------------------------------------------------------------------


def test_cli_exports_and_exit_codes(run: FinishedRun, run_builder: RunBuilder, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = str(run.root)
    assert cli.main(["--store", store, "export-notebook", run.run_id, "-o", str(tmp_path / "s.ipynb")]) == 0
    nbformat.validate(nbformat.read(tmp_path / "s.ipynb", as_version=4))
    assert cli.main(["--store", store, "export-bundle", run.run_id, "-o", str(tmp_path / "b.zip")]) == 0
    assert zipfile.is_zipfile(tmp_path / "b.zip")
    capsys.readouterr()
    assert cli.main(["--store", store, "export-notebook", "no-such-run", "-o", str(tmp_path / "x.ipynb")]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
    unfinished = run_builder.run("paused")
    other = str(run_builder.store.root)
    assert cli.main(["--store", other, "export-bundle", unfinished, "-o", str(tmp_path / "x.zip")]) == 2
    err = capsys.readouterr().err
    assert "not finished" in err and "resume" in err
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.ipynb").exists()


def test_history_offers_the_handoff_of_finished_runs(run: FinishedRun, run_builder: RunBuilder) -> None:
    offer = history_view.handoff(run.store, run.store.get_run(run.run_id))
    assert offer.ready and offer.notebook_name.endswith(".ipynb") and offer.bundle_name.endswith(".zip")
    running = run_builder.run("running")
    offer = history_view.handoff(run_builder.store, run_builder.store.get_run(running))
    assert not offer.ready and "finished" in offer.why_not


def test_history_page_has_the_handoff_buttons(run: FinishedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    from apptest_helpers import open_page

    monkeypatch.setenv("MLESTAR_HOME", str(run.root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    at = open_page("app_pages/history.py", run.run_id)
    buttons = {b.key: b for b in at.get("download_button")}
    assert buttons["history.download.notebook"].disabled is False
    assert buttons["history.download.bundle"].disabled is False
