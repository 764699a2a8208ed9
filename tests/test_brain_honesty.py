"""The LLM brain under failure, through the real google-genai SDK against the faithful fake Gemini:
whose fault a failure is decides what happens (retry with the delay the service asked for, answer
without a refused tool, or fail the step with our traceback), and each is recorded as what it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import FakeGemini, Fault, Reply, ScriptedExpert, scripted, searched

from mlestar_core.brains.base import BrainCallRecord, BrainContext, BrainUnavailable, step_scope
from mlestar_core.brains.llm.brain import LLMBrain
from mlestar_core.brains.llm.clients import LocalError
from mlestar_core.brains.llm.gemini import GeminiClient
from mlestar_core.brains.llm.settings import LLMSettings
from mlestar_core.config import RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.store import Store
from mlestar_core.task import load_task

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "demo_tasks" / "breast-cancer"


@pytest.fixture(autouse=True)
def no_ambient_google_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def ctx() -> BrainContext:
    return BrainContext(task=load_task(TASK))


def gemini_brain(fake: FakeGemini, **settings: Any) -> tuple[LLMBrain, list[BrainCallRecord], list[float]]:
    llm = LLMSettings(base_url=fake.url, **{"backoff": 0.5, "max_retries": 2, **settings})
    sleeps: list[float] = []
    brain = LLMBrain(GeminiClient(llm, "test-key"), llm, name="gemini", default_model="gemini-3.5-flash",
                     sleep=lambda s: sleeps.append(s))
    calls: list[BrainCallRecord] = []
    brain.on_call = calls.append
    return brain, calls, sleeps


def test_a_429_waits_as_long_as_the_body_asks(ctx: BrainContext) -> None:
    """Google sends the delay only in error.details (RetryInfo); the brain waits at least that long."""
    expert = ScriptedExpert()
    with FakeGemini(scripted(expert, {("summarize_ablation", 0): Fault(429, "Quota exceeded.", retry_after=7.0)})
                    ) as fake:
        brain, calls, sleeps = gemini_brain(fake)
        with step_scope("t0/o0/ablation"):
            brain.summarize_ablation(ctx, [])
    assert sum(sleeps) >= 7.0  # not the 0.5 s backoff
    assert [c.outcome for c in calls] == ["failed", "ok"] and "429" in (calls[0].error or "")


def test_a_refused_search_tool_is_answered_without_it_and_says_so(ctx: BrainContext) -> None:
    expert = ScriptedExpert()
    with FakeGemini(scripted(expert), refuse_search=["gemini-3.5-flash"]) as fake:
        brain, calls, _ = gemini_brain(fake)
        with step_scope("retrieve"):
            cards = brain.retrieve_models(ctx, 2)
        sent = list(fake.calls)
    assert [searched(c) for c in sent] == [True, False]  # asked again at once, without the tool
    assert len(cards) == 2 and all("no web search" in c.source and "refused the search tool" in c.source
                                   for c in cards)
    assert all(c.sources == [] for c in cards)  # nothing pretends to be grounded
    assert [c.outcome for c in calls] == ["failed", "ok"] and "400" in (calls[0].error or "")
    assert "refused the search tool" in calls[1].grounding.get("tool_refused", "")


def test_our_own_bug_fails_at_once_with_the_traceback_not_as_an_outage(ctx: BrainContext,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug on our side is not retried five times and does not pause the run with "resume when the
    service is back": the step fails and the brain call keeps the traceback."""
    with FakeGemini(scripted(ScriptedExpert())) as fake:
        brain, calls, sleeps = gemini_brain(fake)

        def broken(request: Any) -> Any:
            raise TypeError("config() got an unexpected keyword argument 'temprature'")

        monkeypatch.setattr(brain.client, "_config", broken)
        with step_scope("t0/o0/ablation"), pytest.raises(LocalError) as raised:
            brain.summarize_ablation(ctx, [])
        assert fake.calls == []
    assert isinstance(raised.value.__cause__, TypeError)
    assert sleeps == [] and len(calls) == 1  # no retry
    assert calls[0].outcome == "failed" and "local error (not the service)" in (calls[0].error or "")
    assert "Traceback" in (calls[0].error or "") and "temprature" in (calls[0].error or "")


def test_a_local_bug_fails_the_run_instead_of_pausing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with FakeGemini(scripted(ScriptedExpert())) as fake:
        store = Store(tmp_path / "store")
        config = RunConfig(num_models=1, outer_steps=1, inner_steps=1, num_solutions=1, ensemble_rounds=0,
                           workers=2, script_timeout=120, n_folds=3, brain="gemini",
                           llm=LLMSettings(base_url=fake.url, backoff=0.01))
        run_id = create_run(store, load_task(TASK), config, out_dir=tmp_path / "out")
        pipeline = Pipeline(store, run_id)

        def broken(request: Any) -> Any:
            raise ValueError("bad schema built by us")

        monkeypatch.setattr(pipeline.brain.client, "_config", broken)  # type: ignore[attr-defined]
        with pytest.raises(LocalError):
            pipeline.run()
    run = store.get_run(run_id)
    assert run["status"] == "failed" and run["pause_reason"] is None
    (call,) = store.table("brain_calls", run_id)
    assert "bad schema built by us" in call["error"] and "Traceback" in call["error"]
    failed = [s for s in store.steps(run_id) if s["status"] == "failed"]
    assert failed and "bad schema" in (failed[0]["error"] or "")


def test_unreadable_checker_answers_are_re_asked_then_recorded_as_not_checked(ctx: BrainContext) -> None:
    code = ("# [block: load]\nx = 1\n# [end block: load]\n# [block: model]\nm = 2\n# [end block: model]\n")
    odd = '```json\n{"verdict": "fine", "notes": []}\n```'  # JSON, but not the checker's fields
    with FakeGemini(lambda call: Reply(odd)) as fake:
        brain, calls, _ = gemini_brain(fake, format_retries=1)
        with step_scope("t0/checks"):
            result = brain.check_data_usage(ctx, code)
        asked = list(fake.calls)
    assert len(asked) == 2 and "could not be used" in asked[1].prompt  # re-asked with the problem
    assert result.checked is False and result.code == code
    assert [c.outcome for c in calls] == ["unusable", "unusable", "fallback"]


def test_a_service_that_stays_down_pauses_with_its_reason(ctx: BrainContext) -> None:
    with FakeGemini(lambda call: Fault(503, "The model is overloaded.")) as fake:
        brain, calls, _ = gemini_brain(fake, max_retries=1)
        with step_scope("t0/o0/ablation"), pytest.raises(BrainUnavailable, match="service is back"):
            brain.summarize_ablation(ctx, [])
    assert [c.outcome for c in calls] == ["failed", "failed"]
