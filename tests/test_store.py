import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

from mlestar_core.config import RunConfig
from mlestar_core.store import Store


def _exec(score: float | None = 0.5) -> SimpleNamespace:
    return SimpleNamespace(exit_code=0, stdout="out", stderr="", score=score, wall_time=1.0,
                           peak_memory_mb=10.0, timed_out=False, memory_exceeded=False, killed_reason=None)


def test_run_roundtrip_and_artifacts_folder(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {"name": "demo"}, RunConfig(seed=7), "offline")
    run = store.get_run(run_id)
    assert run is not None and run["status"] == "created" and '"seed": 7' in run["config_json"]
    assert store.run_dir(run_id).is_dir()
    store.update_run(run_id, status="running", best_score=0.9)
    assert [r["id"] for r in store.list_runs()] == [run_id]
    assert store.get_run(run_id)["best_score"] == 0.9


def test_records_are_readable_from_another_connection_while_writing(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "offline")
    sid = store.add_script(run_id, "initial", "# [block: a]\nx=1\n# [end block: a]\n", label="xgb")
    store.add_execution(run_id, sid, _exec(0.75), purpose="search")
    store.emit(run_id, "script_executed", {"script_id": sid})
    # a separate process would open its own connection: WAL lets it read committed rows
    other = sqlite3.connect(tmp_path / "mlestar.db")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT score FROM executions WHERE script_id = ?", (sid,)).fetchone()[0] == 0.75
    assert store.get_script(sid)["blocks_json"] == '["a"]'
    events = store.events_after(run_id, 0)
    assert [e["kind"] for e in events] == ["script_executed"]
    assert store.events_after(run_id, events[-1]["seq"]) == []


def test_step_memo_only_returns_completed_steps(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "offline")
    assert store.step_result(run_id, "init") == (False, None)
    store.start_step(run_id, "init", "init")
    assert store.step_result(run_id, "init") == (False, None)  # in flight: must be redone
    store.finish_step(run_id, "init", [{"script_id": 1, "score": 0.5}])
    assert store.step_result(run_id, "init") == (True, [{"script_id": 1, "score": 0.5}])


def test_decisions_flow(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "offline")
    did = store.request_decision(run_id, "t0/o0/i0/r0", "model", "plan", "code")
    assert store.request_decision(run_id, "t0/o0/i0/r0", "model", "plan", "code") == did
    assert [d["id"] for d in store.pending_decisions()] == [did]
    store.decide(did, "edited", edited_plan="new plan")
    d = store.get_decision(did)
    assert d["status"] == "edited" and d["edited_plan"] == "new plan"
    assert store.pending_decisions(run_id) == []
    kinds = [e["kind"] for e in store.events_after(run_id)]
    assert kinds == ["approval_needed", "decision"]


def test_concurrent_writers_lose_nothing(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "offline")

    def write(n: int) -> None:
        for i in range(50):
            store.emit(run_id, "log", {"writer": n, "i": i})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = store.events_after(run_id)
    assert len(events) == 200
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_delete_run_removes_rows_and_files(tmp_path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "offline")
    store.add_script(run_id, "initial", "x = 1")
    store.delete_run(run_id)
    assert store.get_run(run_id) is None
    assert store.table("scripts", run_id) == []
    assert not store.run_dir(run_id).exists()


def test_brain_call_list_is_light_newest_first_and_numbered_in_the_run(tmp_path) -> None:
    from mlestar_core.brains.base import BrainCallRecord

    store = Store(tmp_path)
    run_id = store.create_run("demo", {}, {}, "gemini")
    other = store.create_run("other", {}, {}, "gemini")
    ids = [store.add_brain_call(run_id, BrainCallRecord(role=role, prompt="p" * 10, answer=answer, error=error))
           for role, answer, error in [("merge", "ok", None), ("debug", None, "HTTP 503"), ("merge", "fine", None)]]
    store.add_brain_call(other, BrainCallRecord(role="merge", prompt="x", answer="y"))
    rows = store.brain_call_list(run_id)
    assert [r["id"] for r in rows] == ids[::-1] and [r["n"] for r in rows] == [3, 2, 1]
    assert "prompt" not in rows[0] and "answer" not in rows[0]
    assert rows[0]["prompt_chars"] == 10 and rows[1]["answer_chars"] is None
    assert [r["n"] for r in store.brain_call_list(run_id, roles=["merge"])] == [3, 1]
    assert [r["id"] for r in store.brain_call_list(run_id, failed_only=True)] == [ids[1]]
    assert [r["n"] for r in store.brain_call_list(run_id, limit=2)] == [3, 2]
    assert store.get_brain_call(ids[0])["answer"] == "ok"


def test_known_secrets_never_reach_the_store(tmp_path: Path) -> None:
    from mlestar_core.hardening import register_secret
    secret = "sk-test-store-secret-0123456789"
    register_secret(secret)
    store = Store(tmp_path)
    run_id = store.create_run("r", {"name": "t"}, {}, "offline")
    store.update_run(run_id, error=f"Traceback ... KeyError: {secret}", pause_reason=f"key {secret} refused")
    store.emit(run_id, "log", {"message": f"saw {secret}"})
    res = SimpleNamespace(stdout=f"key={secret}\n", stderr=f"err {secret}", score=None, wall_time=0.1,
                          peak_memory_mb=1.0, timed_out=False, memory_exceeded=False, killed_reason=None,
                          exit_code=1)
    store.add_execution(run_id, store.add_script(run_id, "initial", "print(1)"), res)
    store.add_brain_call(run_id, {"role": "debug", "prompt": f"fix {secret}", "answer": secret, "error": secret})
    dump = "\n".join(line for line in store._conn().iterdump())
    assert secret not in dump
    assert "[REDACTED]" in store.get_run(run_id)["error"]
    assert "[REDACTED]" in store.events_after(run_id)[-1]["payload"]["message"]
