"""AppTest tests for the router and the Home, New run and History pages.

Each test points the store at a fresh folder (MLESTAR_HOME); the app's cached services are keyed
on that folder, so every test gets its own Store and RunManager. Runs are made with
Store.create_run + update_run; the pipeline never runs here. The one fake is RunManager.start
(`started` fixture), which records what it was given and registers a run without starting it.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apptest_helpers import texts
from streamlit.testing.v1 import AppTest

from mlestar_core.config import RunConfig
from mlestar_core.model import Task
from mlestar_core.pipeline import create_run
from mlestar_core.service import RunManager
from mlestar_core.store import Store
from mlestar_core.uploads import demo_config, list_demo_tasks, load_uploaded_task
from studio import state
from studio.state import HistoryKeys, HomeKeys
from studio.state import NewRunKeys as K

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
BREAST = ROOT / "demo_tasks" / "breast-cancer"
TIMEOUT = 60  # the first run imports pandas, plotly and the pipeline


@dataclass
class Started:
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        assert self.calls, "RunManager.start was not called"
        return self.calls[-1]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])  # no --demo unless a test says so
    return Store(root)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    rec = Started()

    def fake_start(self: RunManager, task: Task, config: RunConfig, *, name: str | None = None,
                   out_dir: Path | None = None, api_key: str | None = None) -> str:
        rec.calls.append({"task": task, "config": config, "name": name, "api_key": api_key})
        return create_run(self.store, task, config, name=name, out_dir=out_dir)

    monkeypatch.setattr(RunManager, "start", fake_start)
    return rec


def boot(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def make_run(store: Store, name: str = "breast-cancer", status: str = "finished", best: float | None = 0.97,
             holdout: float | None = 0.95, task_dir: Path = BREAST, **fields: Any) -> str:
    task = load_uploaded_task(task_dir, name=name)
    run_id = store.create_run(name, task, demo_config(), "offline", task_dir=str(task.data_dir))
    store.update_run(run_id, status=status, best_score=best, holdout_score=holdout, time_used=125.0, **fields)
    return run_id


def upload(at: AppTest, key: str, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    return at.run()


# -- router --------------------------------------------------------------------------------


def test_sidebar_shows_the_brain_and_every_page_is_registered(store: Store) -> None:
    at = boot()
    assert "Brain:** offline (default for new runs)" in texts(at.sidebar.markdown)
    # Every page runs inside app.py (no legacy pages/ folder): the sidebar comes with each one.
    for page in ("app_pages/new_run.py", "app_pages/run.py", "app_pages/models.py", "app_pages/ablation.py",
                 "app_pages/attempts.py", "app_pages/ensemble.py", "app_pages/explain.py", "app_pages/predict.py",
                 "app_pages/brain_calls.py", "app_pages/history.py", "app_pages/replay.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert at.title, page  # the page drew something
        assert "Brain:** offline (default for new runs)" in texts(at.sidebar.markdown), page


def test_sidebar_says_whether_scripts_are_sandboxed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlestar_core import sandbox
    if sandbox.status().sandboxed:
        at = boot()
        assert "Sandbox:** bubblewrap · no network" in texts(at.sidebar.markdown)
        assert not at.sidebar.warning
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "none")  # what a machine without bubblewrap gets
    at = boot()
    assert "Sandbox off" in texts(at.sidebar.warning)
    assert "can read" in texts(at.sidebar.warning) and "SANDBOX OFF" in texts(at.sidebar.caption)


def test_approval_banner_links_to_the_waiting_run(store: Store) -> None:
    at = boot()
    assert "waiting for your approval" not in texts(at.sidebar.warning)
    run_id = make_run(store, status="waiting")
    store.request_decision(run_id, "t0/o0/i0", "model", "use more trees", "model = X()")
    at = boot()  # a new session: AppTest keeps the entrypoint's sidebar on a session's first run only
    assert "1 refinement plan waiting for your approval" in texts(at.sidebar.warning)
    link = at.sidebar.get("page_link")[0]
    assert run_id in str(link.proto)  # its query param selects that run


def test_selected_run_survives_a_reload_through_the_url(store: Store) -> None:
    run_id = make_run(store)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[state.QUERY_RUN] = run_id
    at.run()
    assert at.session_state[state.RUN_ID] == run_id


def test_engine_failure_is_a_message_not_a_traceback(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: RunManager, store: Store) -> None:
        raise ImportError("cannot import name 'OfflineBrain'")

    monkeypatch.setattr(RunManager, "__init__", broken)
    at = boot()
    assert "The run engine could not be loaded" in texts(at.error)
    assert "OfflineBrain" in texts(at.error)
    at.button(key=HomeKeys.DEMO_START).click().run()
    assert not at.exception
    assert "The run engine could not be loaded" in texts(at.error)
    at.switch_page("app_pages/history.py").run()
    assert not at.exception


# -- Home ----------------------------------------------------------------------------------


def test_home_empty_state(store: Store) -> None:
    at = boot()
    assert "No runs yet" in texts(at.info)
    assert set(at.selectbox(key=HomeKeys.DEMO_PICK).options) == set(list_demo_tasks())
    assert not at.get("dataframe")


def test_home_lists_latest_runs_and_opens_one(store: Store) -> None:
    done = make_run(store, name="breast-cancer", best=0.987654)
    failed = make_run(store, name="wine", status="failed", best=None, holdout=None)
    at = boot()
    table = at.dataframe[0].value
    assert list(table["run id"]) == [failed, done]  # newest first
    assert table.loc[table["run id"] == done, "best score"].item() == pytest.approx(0.987654)
    assert "failed" in table.loc[table["run id"] == failed, "status"].item()
    at.button(key=HomeKeys.OPEN_PREFIX + done).click().run()
    assert not at.exception
    assert at.session_state[state.RUN_ID] == done
    assert at.query_params[state.QUERY_RUN] == done


def test_home_demo_button_starts_a_small_demo_run(store: Store, started: Started) -> None:
    at = boot()
    at.selectbox(key=HomeKeys.DEMO_PICK).set_value("wine-cultivar").run()
    at.button(key=HomeKeys.DEMO_START).click().run()
    assert not at.exception
    call = started.last
    assert call["task"].name == "wine-cultivar"
    assert call["config"].time_budget == 300 and call["config"].brain == "offline"
    assert at.session_state[state.RUN_ID] == store.list_runs()[0]["id"]


def test_start_failure_shows_the_reason(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("brain exploded")

    monkeypatch.setattr(RunManager, "start", fail)
    at = boot()
    at.button(key=HomeKeys.DEMO_START).click().run()
    assert not at.exception
    assert "The run could not start: RuntimeError: brain exploded" in texts(at.error)
    assert at.session_state[state.RUN_ID] is None


def test_make_run_demo_starts_once_per_process(store: Store, started: Started,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["streamlit", "--demo", "diabetes-progression"])
    at = boot()
    assert len(started.calls) == 1 and started.last["task"].name == "diabetes-progression"
    run_id = store.list_runs()[0]["id"]
    at.run()
    boot()  # a second session of the same process
    assert len(started.calls) == 1  # never on reruns or later sessions
    at.button(key=HomeKeys.WATCH_DEMO).click().run()
    assert at.session_state[state.RUN_ID] == run_id


def test_make_run_demo_reuses_an_existing_run(store: Store, started: Started,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    existing = make_run(store, name="breast-cancer")
    monkeypatch.setattr(sys, "argv", ["streamlit", "--", "--demo=breast-cancer"])
    at = boot()
    assert started.calls == []
    assert "A demo run on **breast-cancer** is in the store (finished)" in texts(at.markdown)
    at.button(key=HomeKeys.WATCH_DEMO).click().run()
    assert at.session_state[state.RUN_ID] == existing


def test_unknown_demo_is_reported(store: Store, started: Started, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["streamlit", "--demo", "titanic"])
    at = boot()
    assert "no demo task called 'titanic'" in texts(at.error)
    assert started.calls == []


# -- New run -------------------------------------------------------------------------------


def test_new_run_empty_state(store: Store) -> None:
    at = boot("app_pages/new_run.py")
    assert "Upload a training CSV to continue" in texts(at.info)
    assert "Up to 200 MB per file" in texts(at.caption)
    assert not at.button  # nothing to start yet


def test_csv_upload_shows_preview_derived_task_and_chart(store: Store) -> None:
    at = boot("app_pages/new_run.py")
    upload(at, K.TRAIN, "breast.csv", (BREAST / "train.csv").read_bytes())
    assert not at.exception
    assert "Pick the **target column**" in texts(at.warning)  # a bare CSV does not name its target
    head = at.dataframe[0].value
    assert len(head) == 10 and "malignant" in head.columns
    at.text_area(key=K.DESCRIPTION).input("Predict `malignant`. Submissions are evaluated on log loss.").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Target": "malignant", "Task type": "binary", "Metric": "Log loss",
                       "Better is": "lower ↓"}
    columns = at.dataframe[1].value.set_index("column")
    assert columns.loc["malignant", "role"] == "target" and columns.loc["id", "role"] == "id"
    assert "missing %" in columns.columns
    chart = at.get("plotly_chart")[0]
    assert '"type":"bar"' in chart.proto.spec.replace(" ", "")  # classes -> bar chart
    assert at.button(key=K.START).disabled is False


def test_regression_demo_gets_a_histogram(store: Store) -> None:
    at = boot("app_pages/new_run.py")
    at.radio(key=K.SOURCE).set_value("demo").run()
    at.selectbox(key=K.DEMO).set_value("diabetes-progression").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Task type"] == "regression"
    assert '"type":"histogram"' in at.get("plotly_chart")[0].proto.spec.replace(" ", "")


def _zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(("source", "key", "name", "data", "message"), [
    ("csv", K.TRAIN, "data.xlsx", b"PK\x03\x04\x14\x00", "data.xlsx is not a CSV file (.xlsx)"),
    ("csv", K.TRAIN, "empty.csv", b"", "empty.csv is empty"),
    ("csv", K.TRAIN, "binary.csv", b"\x00\x01\x02abc", "binary.csv is not a text CSV"),
    ("csv", K.TRAIN, "broken.csv", b'a,b\n1,2\n3,"4\n5,6,7,8\n', "train.csv is not a valid CSV"),
    ("zip", K.ZIP, "evil.zip", _zip({"../../evil.csv": "a\n1\n"}), "leaves the folder"),
    ("zip", K.ZIP, "notes.zip", _zip({"notes.txt": "hi"}), "no train.csv"),
    ("zip", K.ZIP, "fake.zip", b"not a zip at all", "fake.zip is not a readable zip file"),
])
def test_bad_uploads_show_an_error_not_a_traceback(store: Store, source: str, key: str, name: str, data: bytes,
                                                   message: str) -> None:
    at = boot("app_pages/new_run.py")
    at.radio(key=K.SOURCE).set_value(source).run()
    upload(at, key, name, data)
    assert not at.exception, at.exception
    assert message in texts(at.error)
    assert not at.button  # no Start button for a broken upload


def test_wrong_target_override_shows_the_task_error(store: Store) -> None:
    at = boot("app_pages/new_run.py")
    upload(at, K.TRAIN, "breast.csv", (BREAST / "train.csv").read_bytes())
    at.selectbox(key=K.TARGET).set_value("mean_radius").run()
    at.selectbox(key=K.TASK_TYPE).set_value("binary").run()
    assert not at.exception
    assert "target 'mean_radius' has 384 distinct non-integer values; it looks continuous" in texts(at.error)
    assert all(b.key != K.START for b in at.button)  # no task, nothing to start


def test_knobs_and_overrides_reach_run_manager_start(store: Store, started: Started) -> None:
    at = boot("app_pages/new_run.py")
    upload(at, K.TRAIN, "cancer.csv", (BREAST / "train.csv").read_bytes())
    upload(at, K.TEST, "cancer_test.csv", (BREAST / "test.csv").read_bytes())
    at.selectbox(key=K.TARGET).set_value("malignant").run()
    at.selectbox(key=K.METRIC).set_value("accuracy").run()
    for key, value in [(K.NUM_MODELS, 2), (K.OUTER, 1), (K.INNER, 1), (K.SOLUTIONS, 1), (K.ENSEMBLE, 0),
                       (K.TIME_BUDGET, 120), (K.WORKERS, 2), (K.SEED, 7), (K.SCRIPT_TIMEOUT, 60)]:
        at.number_input(key=key).set_value(value)
    at.checkbox(key=K.APPROVAL).check()
    at.checkbox(key=K.LEAKAGE).uncheck()
    at.text_area(key=K.CONSTRAINTS).input("no deep learning\n\n  keep it under a minute  \n")
    at.text_input(key=K.NAME).input("my cancer run")
    at.run()
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception

    call = started.last
    task, config = call["task"], call["config"]
    assert (task.name, task.target, task.metric, task.task_type) == ("cancer", "malignant", "accuracy", "binary")
    assert task.test_file == "test.csv"
    assert (config.num_models, config.outer_steps, config.inner_steps, config.num_solutions,
            config.ensemble_rounds) == (2, 1, 1, 1, 0)
    assert (config.time_budget, config.workers, config.seed, config.script_timeout) == (120, 2, 7, 60)
    assert config.require_approval is True and config.use_leakage_checker is False
    assert config.constraints == ["no deep learning", "keep it under a minute"]
    assert config.brain == "offline" and call["name"] == "my cancer run"
    run_id = store.list_runs()[0]["id"]
    assert at.session_state[state.RUN_ID] == run_id
    assert at.query_params[state.QUERY_RUN] == run_id


def test_decide_for_me_after_n_minutes(store: Store, started: Started) -> None:
    """"Decide for me after N minutes" is off until approval is on, empty means wait, minutes become seconds."""
    at = boot("app_pages/new_run.py")
    at.radio(key=K.SOURCE).set_value("demo").run()
    assert at.number_input(key=K.AUTO_APPROVE).disabled  # no approval: no plan ever waits
    at.checkbox(key=K.APPROVAL).check().run()
    field = at.number_input(key=K.AUTO_APPROVE)
    assert not field.disabled and field.value is None  # empty: wait for the decision as long as it takes
    assert field.label == "Decide for me after N minutes"
    field.set_value(5).run()
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception
    config = started.last["config"]
    assert config.require_approval is True and config.auto_approve_after == 300.0
    (row,) = store.list_runs()
    assert json.loads(row["config_json"])["auto_approve_after"] == 300.0  # the run's stored config has it

    at = boot("app_pages/new_run.py")  # a number left in the field after approval is turned off is not sent
    at.radio(key=K.SOURCE).set_value("demo").run()
    at.checkbox(key=K.APPROVAL).check().run()
    at.number_input(key=K.AUTO_APPROVE).set_value(2.5).run()
    at.checkbox(key=K.APPROVAL).uncheck().run()
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception
    assert started.last["config"].require_approval is False and started.last["config"].auto_approve_after is None


def test_zero_budget_means_no_limit(store: Store, started: Started) -> None:
    at = boot("app_pages/new_run.py")
    at.radio(key=K.SOURCE).set_value("demo").run()
    at.number_input(key=K.TIME_BUDGET).set_value(0).run()
    at.button(key=K.START).click().run()
    assert started.last["config"].time_budget is None


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No API key anywhere: not in the environment, not in .streamlit/secrets.toml."""
    from mlestar_core.brains.llm import secrets

    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "GOOGLE_CLOUD_PROJECT",
                 "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(secrets, "SECRETS_FILE", tmp_path / "no-secrets.toml")


def demo_page(brain: str | None = None) -> AppTest:
    at = boot("app_pages/new_run.py")
    at.radio(key=K.SOURCE).set_value("demo").run()
    if brain:
        at.selectbox(key=K.BRAIN).set_value(brain).run()
    assert not at.exception, at.exception
    return at


def labels(at: AppTest, kind: str) -> set[str]:
    return {w.label for w in at.get(kind)}


def test_new_run_offers_every_brain(store: Store, no_keys: None) -> None:
    at = demo_page()
    brain = at.selectbox(key=K.BRAIN)
    assert brain.value == "offline" and brain.options == [
        "Offline — deterministic, no LLM", "Gemini (Google)", "OpenAI-compatible server (Ollama, vLLM, LM Studio…)",
        "Replay a recorded run (cassette)"]
    assert "built-in expert" in texts(at.caption) and not at.button(key=K.START).disabled

    at = demo_page("gemini")
    assert at.text_input(key=K.GEMINI_MODEL).value == "gemini-3.5-flash"
    assert at.text_input(key=K.GEMINI_KEY).proto.type == at.text_input(key=K.GEMINI_KEY).proto.PASSWORD
    assert at.toggle(key=K.SEARCH).value is True and at.toggle(key=K.VERTEX).value is False
    assert {"Advanced"} <= {e.label for e in at.expander}
    assert at.number_input(key=f"{K.PRICE_IN}gemini.gemini-3.5-flash").value == 1.5  # from the price table
    assert at.number_input(key=f"{K.PRICE_OUT}gemini.gemini-3.5-flash").value == 9.0
    assert at.number_input(key=K.COST_CAP).value is None  # no cap unless one is typed (never a silent $0)
    assert {"Timeout (s)", "Max retries", "Base URL"} <= labels(at, "text_input") | labels(at, "number_input")
    at.text_input(key=K.GEMINI_MODEL).input("gemini-2.5-flash").run()  # another model brings its own price
    assert at.number_input(key=f"{K.PRICE_IN}gemini.gemini-2.5-flash").value == 0.3
    at.toggle(key=K.VERTEX).set_value(True).run()
    assert {"Google Cloud project", "Location"} <= labels(at, "text_input")

    at = demo_page("openai")
    assert at.text_input(key=K.OPENAI_URL).value == "http://localhost:11434/v1"
    assert at.text_input(key=K.OPENAI_MODEL).value == "llama3.1"
    assert at.text_input(key=K.OPENAI_KEY).label == "API key (optional)"
    assert "bundled knowledge base" in texts(at.caption) and "no web search" in texts(at.caption)
    assert at.number_input(key=f"{K.PRICE_IN}openai.llama3.1").value == 0.0
    assert not at.button(key=K.START).disabled  # no key needed

    at = demo_page("replay")
    assert at.file_uploader(key=K.CASSETTE) is not None and at.number_input(key=K.COST_CAP).value is None


def test_gemini_start_needs_a_key(store: Store, started: Started, no_keys: None,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at = demo_page("gemini")
    assert at.button(key=K.START).disabled
    assert "Gemini needs an API key" in texts(at.warning)
    assert "No key found: type one, or set GEMINI_API_KEY or GOOGLE_API_KEY" in texts(at.caption)

    at.toggle(key=K.VERTEX).set_value(True).run()  # Vertex AI: a project instead of a key
    assert at.button(key=K.START).disabled and "needs a Google Cloud project" in texts(at.warning)
    at.text_input(key=K.PROJECT).input("my-project").run()
    assert not at.button(key=K.START).disabled
    at.toggle(key=K.VERTEX).set_value(False).run()

    monkeypatch.setenv("GEMINI_API_KEY", "from-the-env")
    at.run()
    assert not at.button(key=K.START).disabled
    assert "Using GEMINI_API_KEY from the environment" in texts(at.caption)
    assert "from-the-env" not in texts(at.caption)


def test_typed_key_reaches_the_manager_only(store: Store, started: Started, no_keys: None) -> None:
    secret = "AIza-typed-secret-1234567890"
    at = demo_page("gemini")
    at.text_input(key=K.GEMINI_KEY).input(secret).run()
    assert not at.button(key=K.START).disabled
    assert "kept in this app's memory only" in texts(at.caption) and secret not in texts(at.caption)
    at.text_input(key=K.GEMINI_MODEL).input("gemini-3.1-pro-preview").run()
    at.number_input(key=f"{K.PRICE_IN}gemini.gemini-3.1-pro-preview").set_value(1.0)
    at.number_input(key=K.COST_CAP).set_value(2.5)
    at.toggle(key=K.SEARCH).set_value(False)
    at.run()
    # In the session, only the password widget itself holds it (in memory, while the page shows it).
    assert [k for k, v in at.session_state.to_dict().items() if secret in repr(v)] == [K.GEMINI_KEY]
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception

    call = started.last
    config = call["config"]
    assert call["api_key"] == secret
    assert config.brain == "gemini" and config.cost_cap == 2.5
    assert (config.llm.model, config.llm.search, config.llm.vertex) == ("gemini-3.1-pro-preview", False, False)
    assert config.llm.prices == {"gemini-3.1-pro-preview": [1.0, 12.0]}  # only the price that was changed
    run_id = store.list_runs()[0]["id"]
    assert secret not in json.dumps(config.to_dict())
    # Nothing persisted holds the key: not the store (database, WAL, run folders), not the URL.
    for path in store.root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert all(secret not in str(v) for v in at.query_params.values())
    # On the Run dashboard the New run page's widgets are gone, and the key with them.
    assert [k for k, v in at.session_state.to_dict().items() if secret in repr(v)] == []
    assert at.session_state[state.RUN_ID] == run_id


def test_openai_settings_reach_the_config(store: Store, started: Started, no_keys: None) -> None:
    at = demo_page("openai")
    at.text_input(key=K.OPENAI_URL).input("http://127.0.0.1:8000/v1")
    at.text_input(key=K.OPENAI_MODEL).input("qwen3:8b")
    at.run()
    at.button(key=K.START).click().run()
    config, key = started.last["config"], started.last["api_key"]
    assert config.brain == "openai" and key is None
    assert (config.llm.base_url, config.llm.model, config.llm.prices, config.cost_cap) == \
        ("http://127.0.0.1:8000/v1", "qwen3:8b", {}, None)
    at = demo_page("openai")
    at.text_input(key=K.OPENAI_URL).input("").run()
    assert at.button(key=K.START).disabled and "base URL" in texts(at.warning)


def test_an_unpriced_model_needs_a_price_under_a_cost_cap(store: Store, started: Started, no_keys: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "from-the-env")
    at = demo_page("gemini")
    at.text_input(key=K.GEMINI_MODEL).input("gemini-flash-latest").run()  # an alias: no price by prefix
    price_in, price_out = f"{K.PRICE_IN}gemini.gemini-flash-latest", f"{K.PRICE_OUT}gemini.gemini-flash-latest"
    assert at.number_input(key=price_in).value is None and at.number_input(key=price_out).value is None  # not $0
    assert "Model gemini-flash-latest has no known price: its calls count as \\$0" in texts(at.warning)
    assert not at.button(key=K.START).disabled  # without a cap it may run; the estimate says what it counts
    at.number_input(key=K.COST_CAP).set_value(2.0).run()
    assert at.button(key=K.START).disabled
    assert "Model gemini-flash-latest has no known price: give its price (USD per 1M input/output tokens) or " \
        "remove the cost cap." in texts(at.warning)
    at.number_input(key=price_in).set_value(1.5)
    at.number_input(key=price_out).set_value(9.0)
    at.run()
    assert not at.button(key=K.START).disabled and "no known price" not in texts(at.warning)
    assert "Before each call its worst case is held against the cap" in texts(at.caption)
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception
    config = started.last["config"]
    assert config.cost_cap == 2.0 and config.llm.prices == {"gemini-flash-latest": [1.5, 9.0]}


def _cassette(store: Store) -> bytes:
    """A cassette exported from a hand-made gemini run with two answered calls."""
    from mlestar_core.brains.base import BrainCallRecord
    from mlestar_core.exports import cassette_json

    config = RunConfig(brain="gemini", num_models=2, outer_steps=1, inner_steps=1, num_solutions=1,
                       ensemble_rounds=0, seed=11)
    task = load_uploaded_task(BREAST, name="breast-cancer")
    rid = create_run(store, task, config)
    store.update_run(rid, status="finished", best_score=0.99)
    for i, role in enumerate(("retrieve_models", "write_initial_solution")):
        store.add_brain_call(rid, BrainCallRecord(role=role, prompt="p", answer="a", step_key="retrieve",
                                                  call_index=i, tokens_in=10, tokens_out=5))
    data = cassette_json(store, rid)
    store.delete_run(rid)
    return data


def test_replay_needs_a_valid_cassette_and_takes_its_knobs(store: Store, started: Started) -> None:
    at = demo_page("replay")
    assert at.button(key=K.START).disabled
    assert "Upload a cassette" in texts(at.warning)

    upload(at, K.CASSETTE, "notes.json", b'{"calls": []}')
    assert not at.exception
    assert "This file cannot be replayed: notes.json is not an MLE-STAR Studio cassette" in texts(at.error)
    assert at.button(key=K.START).disabled

    data = _cassette(store)
    upload(at, K.CASSETTE, "recorded.json", data)
    assert not at.exception, at.exception
    assert "Recorded with the **gemini** brain on task **breast-cancer**" in texts(at.success)
    assert "2 answered calls, best score 0.99" in texts(at.success)
    assert "the recording's algorithm knobs replace the settings above (M = 2, T = 1, K = 1, L = 1, R = 0, " \
           "seed = 11)" in texts(at.info)
    saved = list((store.root / "cassettes").glob("*.json"))
    assert len(saved) == 1 and saved[0].read_bytes() == data
    at.number_input(key=K.NUM_MODELS).set_value(4).run()  # replaced by the recording's M
    at.button(key=K.START).click().run()
    assert not at.exception, at.exception
    config = started.last["config"]
    assert config.brain == "replay" and config.llm.cassette == str(saved[0])
    assert (config.num_models, config.outer_steps, config.inner_steps, config.num_solutions, config.ensemble_rounds,
            config.seed) == (2, 1, 1, 1, 0, 11)
    assert started.last["api_key"] is None


def test_sidebar_and_header_show_the_brain_of_the_run_in_view(store: Store) -> None:
    from mlestar_core.brains.llm.settings import LLMSettings

    task = load_uploaded_task(BREAST, name="gemini-run")
    rid = create_run(store, task, RunConfig(brain="gemini", llm=LLMSettings(model="gemini-3.1-pro-preview")))
    store.update_run(rid, status="finished")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[state.QUERY_RUN] = rid
    at.run()
    assert "Brain:** gemini · gemini-3.1-pro-preview" in texts(at.sidebar.markdown)
    assert "of the run in view: gemini-run" in texts(at.sidebar.caption)
    at.switch_page("app_pages/run.py").run()
    assert "brain **gemini · gemini-3.1-pro-preview**" in texts(at.markdown)
    offline = make_run(store, name="offline-run")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[state.QUERY_RUN] = offline
    at.run()
    assert "Brain:** offline — deterministic, no LLM" in texts(at.sidebar.markdown)


# -- History -------------------------------------------------------------------------------


def test_history_empty_state(store: Store) -> None:
    at = boot("app_pages/history.py")
    assert "No runs yet" in texts(at.info)
    assert not at.get("dataframe")


def test_history_filters(store: Store) -> None:
    make_run(store, name="breast-cancer", status="finished")
    make_run(store, name="wine-cultivar", status="failed", best=None, error="boom")
    make_run(store, name="breast-cancer-2", status="stopped")
    at = boot("app_pages/history.py")
    assert "3 of 3 runs" in texts(at.caption)
    at.multiselect(key=HistoryKeys.STATUS).select("failed").run()
    assert list(at.dataframe[0].value["task"]) == ["wine-cultivar"]
    at.multiselect(key=HistoryKeys.STATUS).unselect("failed").run()
    at.text_input(key=HistoryKeys.SEARCH).input("BREAST").run()
    assert sorted(at.dataframe[0].value["task"]) == ["breast-cancer", "breast-cancer-2"]
    at.multiselect(key=HistoryKeys.BRAIN).select("offline").run()
    assert "2 of 3 runs" in texts(at.caption)
    at.text_input(key=HistoryKeys.SEARCH).input("titanic").run()
    assert "No run matches these filters" in texts(at.info)
    assert not at.exception


def test_history_delete_needs_confirmation(store: Store) -> None:
    keep = make_run(store, name="keep-me")
    doomed = make_run(store, name="delete-me")
    at = boot("app_pages/history.py")
    at.selectbox(key=HistoryKeys.PICK).set_value(doomed).run()
    at.button(key=HistoryKeys.DELETE).click().run()
    assert "cannot be undone" in texts(at.warning)
    assert store.get_run(doomed) is not None  # not yet
    at.button(key=HistoryKeys.DELETE_CANCEL).click().run()
    assert "cannot be undone" not in texts(at.warning) and store.get_run(doomed) is not None
    at.button(key=HistoryKeys.DELETE).click().run()
    at.button(key=HistoryKeys.DELETE_CONFIRM).click().run()
    assert not at.exception
    assert store.get_run(doomed) is None and not store.run_dir(doomed).exists()
    assert store.get_run(keep) is not None
    assert f"Run {doomed} deleted" in texts(at.success)
    assert list(at.dataframe[0].value["run id"]) == [keep]


def test_history_stop_and_resume_go_through_the_manager(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    at = boot("app_pages/history.py")  # boot first: the manager resumes "running" runs it finds at start
    running = make_run(store, name="live", status="running", best=None, holdout=None)
    at.run()
    assert at.button(key=HistoryKeys.DELETE).disabled  # a running run cannot be deleted
    at.button(key=HistoryKeys.STOP).click().run()
    assert not at.exception
    row = store.get_run(running)
    assert row["control"] == "stop" and row["status"] == "stopped"
    resumed: list[str] = []
    monkeypatch.setattr(RunManager, "resume", lambda self, run_id: resumed.append(run_id))
    at.button(key=HistoryKeys.RESUME).click().run()
    assert resumed == [running]
    assert f"Run {running} resumed" in texts(at.success)


def test_history_downloads(store: Store) -> None:
    run_id = make_run(store)
    out = store.run_dir(run_id) / "output"
    out.mkdir(parents=True)
    (out / "solution.py").write_text("print('solution')\n")
    (out / "submission.csv").write_text("id,malignant\n1,0.5\n")
    at = boot("app_pages/history.py")
    buttons = {b.key: b for b in at.get("download_button")}
    assert buttons["history.download.solution.py"].disabled is False
    assert buttons["history.download.submission.csv"].disabled is False
    assert buttons["history.download.report.md"].disabled is True  # not written yet
    assert buttons["history.download.zip"].disabled is False


def test_history_offers_the_cassette_of_llm_runs(store: Store) -> None:
    from mlestar_core.brains.base import BrainCallRecord

    offline = make_run(store, name="offline-run")
    task = load_uploaded_task(BREAST, name="gemini-run")
    gemini = create_run(store, task, RunConfig(brain="gemini"))
    store.update_run(gemini, status="finished")
    at = boot("app_pages/history.py")
    at.selectbox(key=HistoryKeys.PICK).set_value(gemini).run()
    button = next(b for b in at.get("download_button") if b.key == HistoryKeys.CASSETTE)
    assert button.disabled  # no brain call yet
    assert "Replay it offline with `python -m mlestar_core run --brain replay --cassette FILE ...`" \
        in texts(at.caption)
    store.add_brain_call(gemini, BrainCallRecord(role="retrieve_models", prompt="p", answer="a",
                                                 step_key="retrieve"))
    at.run()
    assert not next(b for b in at.get("download_button") if b.key == HistoryKeys.CASSETTE).disabled
    at.selectbox(key=HistoryKeys.PICK).set_value(offline).run()
    assert HistoryKeys.CASSETTE not in {b.key for b in at.get("download_button")}


def test_history_open_selects_the_run(store: Store) -> None:
    run_id = make_run(store)
    at = boot("app_pages/history.py")
    at.button(key=HistoryKeys.OPEN).click().run()
    assert not at.exception
    assert at.session_state[state.RUN_ID] == run_id
    assert at.query_params[state.QUERY_RUN] == run_id


def test_history_compares_two_best_score_curves(store: Store) -> None:
    a = make_run(store, name="first-run")
    b = make_run(store, name="second-run")
    for run_id, points in [(a, [(3.0, 0.90), (9.0, 0.93)]), (b, [(4.0, 0.91)])]:
        for t, score in points:
            store.emit(run_id, "best_score", {"score": score, "time": t})
    at = boot("app_pages/history.py")
    at.selectbox(key=HistoryKeys.COMPARE_A).set_value(a).run()
    at.selectbox(key=HistoryKeys.COMPARE_B).set_value(b).run()
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"].split(" · ")[0] for t in traces] == ["first-run", "second-run"]
    # Each curve goes on, flat, to its run's end (125 s of agent time), with dots only where the score improved.
    assert [list(_values(t["y"])) for t in traces] == [[0.90, 0.93, 0.93], [0.91, 0.91]]
    assert list(_values(traces[0]["x"])) == [3.0, 9.0, 125.0]
    assert list(_values(traces[0]["marker"]["size"])) == [8, 8, 0]


def test_compare_curves_go_on_to_the_end_of_each_run(store: Store) -> None:
    """Issue: the compare-runs chart stopped each curve at its last improvement (a 226 s run showed as one dot at
    10 s). A finished run's curve ends at its agent time; a running one's at now."""
    import time

    at = boot("app_pages/history.py")  # boot first: the manager resumes "running" runs it finds at start
    done, live = make_run(store, name="done-run"), make_run(store, name="live-run", status="running", holdout=None)
    store.update_run(done, time_used=226.0)  # finished after 226 s of agent time
    store.update_run(live, time_used=40.0, clock_at=time.time() - 20.0)  # 40 s stored by its engine 20 s ago
    store.emit(done, "best_score", {"score": 0.95, "time": 10.0})
    store.emit(live, "best_score", {"score": 0.9, "time": 5.0})
    at.run()
    at.selectbox(key=HistoryKeys.COMPARE_A).set_value(done).run()
    at.selectbox(key=HistoryKeys.COMPARE_B).set_value(live).run()
    assert not at.exception
    done_trace, live_trace = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert list(_values(done_trace["x"])) == [10.0, 226.0] and list(_values(done_trace["y"])) == [0.95, 0.95]
    assert list(_values(live_trace["x"]))[-1] == pytest.approx(60.0, abs=10)  # 40 s stored + 20 s since


def _values(data: Any) -> Any:
    """Plotly >= 6 ships arrays as base64 typed buffers in its JSON."""
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return data


# -- shared widgets (used by the run pages) ----------------------------------------------------


GUARDED_APP = """
import streamlit as st
from studio import nav, state, widgets

def guarded() -> None:
    run = widgets.require_run()
    st.write(f"showing {run['name']}")

state.init_state()
pages = [st.Page(guarded, title="Guarded", url_path="guarded", default=True)]
pages += [st.Page(p.path, title=p.title) for ps in nav.SECTIONS.values() for p in ps]
st.navigation(pages).run()
"""


@pytest.fixture
def guarded_app(tmp_path: Path) -> str:
    """An entrypoint whose default page only runs the guard; the real pages are linked next to it."""
    (tmp_path / "app_pages").symlink_to(ROOT / "app_pages")
    script = tmp_path / "guarded_app.py"
    script.write_text(GUARDED_APP)
    return str(script)


def test_require_run_guard(store: Store, guarded_app: str) -> None:
    at = AppTest.from_file(guarded_app, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert "No run selected yet" in texts(at.info)
    assert len(at.get("page_link")) == 3 and "showing" not in texts(at.markdown)  # st.stop() held the page

    at = AppTest.from_file(guarded_app, default_timeout=TIMEOUT)
    at.query_params[state.QUERY_RUN] = "20200101-000000-gone00"
    at.run()
    assert "is not in the store" in texts(at.warning)
    assert at.session_state[state.RUN_ID] is None  # a deleted run is unselected

    run_id = make_run(store, name="visible-run")
    at = AppTest.from_file(guarded_app, default_timeout=TIMEOUT)
    at.session_state[state.RUN_ID] = run_id
    at.run()
    assert "showing visible-run" in texts(at.markdown)
