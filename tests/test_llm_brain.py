"""LLMBrain with an in-process client: retries, re-asks, accounting, redaction, replay matching.

The HTTP clients and a whole pipeline against fake servers are in test_llm_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlestar_core.brains.base import (
    BrainCallRecord,
    BrainContext,
    BrainUnavailable,
    CostCapReached,
    RoleFailed,
    step_scope,
)
from mlestar_core.brains.llm.brain import LLMBrain
from mlestar_core.brains.llm.budget import actual_cost
from mlestar_core.brains.llm.clients import Completion, FatalError, Request, TransientError
from mlestar_core.brains.llm.pricing import PriceBook
from mlestar_core.brains.llm.replay import ReplayClient, make_cassette
from mlestar_core.brains.llm.secrets import find_key, key_source, redact
from mlestar_core.brains.llm.settings import LLMSettings
from mlestar_core.model import AblationResult
from mlestar_core.task import load_task

ROOT = Path(__file__).resolve().parents[1]
SECRET = "AIzaSy-test-secret-key-123456"


class ListClient:
    """Serves a list of completions or exceptions, one per request, and keeps the requests."""

    name = "fake"
    supports_search = True

    def __init__(self, items: list[object]) -> None:
        self.items = list(items)
        self.requests: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.requests.append(request)
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, str)
        return Completion(text=item, tokens_in=1000, tokens_out=500, model="gemini-3.5-flash")


@pytest.fixture(scope="module")
def ctx() -> BrainContext:
    return BrainContext(task=load_task(ROOT / "demo_tasks" / "breast-cancer"))


def brain_with(items: list[object], **settings: object) -> tuple[LLMBrain, ListClient, list[BrainCallRecord],
                                                               list[float]]:
    client = ListClient(items)
    sleeps: list[float] = []
    brain = LLMBrain(client, LLMSettings(**{"backoff": 1.0, **settings}), name="gemini",  # type: ignore[arg-type]
                     default_model="gemini-3.5-flash", secrets=[SECRET], sleep=sleeps.append)
    calls: list[BrainCallRecord] = []
    brain.on_call = calls.append
    return brain, client, calls, sleeps


RESULTS = [AblationResult("model", "a shallow tree", 0.9, 0.97, 0.07)]


def test_transient_failures_are_retried_with_growing_backoff(ctx: BrainContext) -> None:
    brain, client, calls, sleeps = brain_with([TransientError("HTTP 429", 429), TransientError("HTTP 503", 503),
                                               "The model block matters most."])
    with step_scope("t0/o0/ablation"):
        assert brain.summarize_ablation(ctx, RESULTS) == "The model block matters most."
    assert len(client.requests) == 3
    assert sum(sleeps) >= 1.0 + 2.0  # 1 s then 2 s (plus jitter), in small slices
    assert [c.error is not None for c in calls] == [True, True, False]
    assert calls[-1].answer == "The model block matters most." and calls[-1].step_key == "t0/o0/ablation"


def test_retry_after_from_the_server_is_honoured(ctx: BrainContext) -> None:
    brain, _, _, sleeps = brain_with([TransientError("HTTP 429", 429, retry_after=7.0), "ok summary"])
    brain.summarize_ablation(ctx, RESULTS)
    assert sum(sleeps) >= 7.0


def test_a_storm_of_errors_ends_in_brain_unavailable(ctx: BrainContext) -> None:
    brain, client, calls, _ = brain_with([TransientError("HTTP 500 INTERNAL", 500)] * 3, max_retries=2)
    with pytest.raises(BrainUnavailable, match="failed 3 times in a row on summarize_ablation.*HTTP 500"):
        brain.summarize_ablation(ctx, RESULTS)
    assert len(client.requests) == 3 and all(c.answer is None for c in calls)


def test_fatal_errors_are_not_retried(ctx: BrainContext) -> None:
    brain, client, _, sleeps = brain_with([FatalError("HTTP 403 PERMISSION_DENIED: API key not valid", 403)])
    with pytest.raises(BrainUnavailable, match="403"):
        brain.summarize_ablation(ctx, RESULTS)
    assert len(client.requests) == 1 and sleeps == []


def test_unusable_answer_is_re_asked_with_the_problem(ctx: BrainContext) -> None:
    code = "import os\n# [block: load]\nx = 1\n# [end block: load]\n# [block: model]\nm = 2\n# [end block: model]\n"
    good = '```json\n{"block": "model", "plan": "Use more trees.", "reason": "largest delta"}\n```'
    brain, client, calls, _ = brain_with(["I think the model block.", '{"block": "nonsense", "plan": "x"}', good])
    choice = brain.extract_block(ctx, code, RESULTS, "summary", [])
    assert choice.block == "model" and choice.plan == "Use more trees."
    assert "could not be used" in client.requests[1].prompt and "no valid JSON" in client.requests[1].prompt
    assert "one of: load, model" in client.requests[2].prompt
    assert [c.error is not None for c in calls] == [True, True, False]
    assert calls[0].error is not None and calls[0].error.startswith("answer not usable")
    assert [c.call_index for c in calls] == [0, 1, 2]  # replay tells the re-asks apart


CODE = ("import os\n# [block: load]\nx = 1\n# [end block: load]\n# [block: features]\nf = 1\n"
        "# [end block: features]\n# [block: model]\nm = 2\n# [end block: model]\n")


def test_unusable_answers_degrade_each_role_honestly(ctx: BrainContext) -> None:
    """After the re-asks, a role falls back to what it can do without the model, and says so."""
    nonsense = ["I am not sure."] * 3
    brain, client, calls, _ = brain_with(nonsense)
    with pytest.raises(RoleFailed):  # no repair to offer: running the same code again would fail again
        brain.debug(ctx, "print(1)\n", "Traceback: boom")
    assert len(client.requests) == 3
    note = calls[-1]
    assert note.model == "fallback" and "3 answers to debug could not be used" in note.prompt
    assert note.outcome == "fallback" and note.error is not None and note.error.startswith("fallback:")
    assert note.call_index == -1  # never mistaken for model answer #0 in a cassette
    assert [c.outcome for c in calls] == ["unusable"] * 3 + ["fallback"]

    brain, _, _, _ = brain_with(nonsense)
    with pytest.raises(RoleFailed):  # a merge that did not happen is not "merged, then discarded"
        brain.merge(ctx, CODE, CODE)

    brain, _, _, _ = brain_with(nonsense)
    check = brain.check_leakage(ctx, CODE)
    assert not check.changed and check.code == CODE and "could not be read" in check.findings[0]
    assert check.checked is False  # shown as "not checked", never as "found nothing"

    brain, _, _, _ = brain_with(nonsense)
    assert brain.write_ablation(ctx, CODE) == []  # the step goes on without variants

    results = [AblationResult("features", "no features", 0.95, 0.97, 0.02),
               AblationResult("model", "shallow tree", 0.80, 0.97, 0.17)]
    brain, _, _, _ = brain_with(nonsense)
    choice = brain.extract_block(ctx, CODE, results, "summary", [])
    assert choice.block == "model" and "`model`" in choice.plan  # the largest delta
    brain, _, _, _ = brain_with(nonsense)
    assert brain.extract_block(ctx, CODE, results, "summary", ["model"]).block == "features"

    brain, _, _, _ = brain_with(nonsense)
    with pytest.raises(ValueError, match="no usable code for the `model` block"):  # the attempt fails
        brain.implement_refinement(ctx, CODE, "model", "use more trees")


def test_block_names_are_matched_leniently(ctx: BrainContext) -> None:
    brain, _, _, _ = brain_with(['{"block": "Models", "plan": "Tune it."}'])
    assert brain.extract_block(ctx, CODE, [], "summary", []).block == "model"
    one_block = "import os\n# [block: main]\nx = 1\n# [end block: main]\n"
    brain, _, _, _ = brain_with(['{"block": "preprocessing", "plan": "Scale."}'])
    assert brain.extract_block(ctx, one_block, [], "summary", []).block == "main"


def test_tokens_and_cost_are_accounted_and_the_cap_stops_calls(ctx: BrainContext) -> None:
    from mlestar_core.brains.llm.budget import worst_case
    from mlestar_core.brains.llm.pricing import PriceBook

    brain, client, calls, _ = brain_with(["summary one", "summary two"], max_output_tokens=500)
    brain.cost_cap = 1.0
    brain.summarize_ablation(ctx, RESULTS)
    expected = (1000 * 1.50 + 500 * 9.00) / 1e6  # gemini-3.5-flash rates
    assert calls[0].tokens_in == 1000 and calls[0].tokens_out == 500
    assert calls[0].cost == pytest.approx(expected) and brain.spent == pytest.approx(expected)
    assert brain.meter.reserved == 0.0  # the call's reservation became its actual cost
    # The next call's worst case (its prompt, 500 output tokens) no longer fits: refused before it is made.
    worst = worst_case("gemini-3.5-flash", client.requests[0].prompt, 500, False, PriceBook())
    brain.cost_cap = expected + worst - 1e-6
    with pytest.raises(CostCapReached, match="could cost up to"):
        brain.summarize_ablation(ctx, RESULTS)
    assert len(client.requests) == 1 and brain.cost_cap_reached()


def test_secrets_never_reach_a_record(ctx: BrainContext) -> None:
    leaky = f"```python\nimport os\nprint('{SECRET}')\n```"
    brain, _, calls, _ = brain_with([TransientError(f"HTTP 500: bad key {SECRET}", 500), leaky])
    code = brain.debug(ctx, "print(1)\n", "boom")
    assert SECRET not in code
    assert all(SECRET not in f"{c.prompt}{c.answer}{c.error}" for c in calls)
    assert redact(f"a {SECRET} b", [SECRET]) == "a *** b"


def test_key_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('GEMINI_API_KEY = "from-file"\n')
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert find_key("gemini", secrets_file=secrets) == "from-file"
    assert key_source("gemini", secrets_file=secrets) == ".streamlit/secrets.toml"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    assert find_key("gemini", secrets_file=secrets) == "from-env"
    assert find_key("gemini", "typed", secrets_file=secrets) == "typed"
    assert find_key("gemini", secrets_file=tmp_path / "missing.toml") == "from-env"
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert find_key("gemini", secrets_file=tmp_path / "missing.toml") is None


def test_price_table_matches_versions_and_takes_overrides() -> None:
    table = PriceBook({"my-local-model": [0.1, 0.2]})

    def rates(model: str) -> tuple[float, float] | None:
        price = table.price(model)
        return None if price is None else (price.input, price.output)

    assert rates("gemini-3.5-flash-001") == (1.50, 9.00)
    assert rates("models/gemini-2.5-flash-lite") == (0.10, 0.40)  # longest prefix wins
    assert actual_cost("my-local-model", 1_000_000, 1_000_000, 0, False, table) == pytest.approx(0.3)
    assert actual_cost("unknown-model", 10**6, 10**6, 0, False, table) == 0.0


def test_replay_answers_by_step_role_and_number() -> None:
    run = {"id": "r1", "name": "x", "brain": "gemini", "config_json": '{"llm": {"search": true}, "num_models": 3}',
           "task_json": '{"name": "t", "metric": "roc_auc"}', "best_score": 0.9}
    rows = [
        {"role": "debug", "step_key": "init", "call_index": 0, "prompt": "p", "answer": "first"},
        {"role": "debug", "step_key": "init", "call_index": 1, "prompt": "p", "answer": "second"},
        {"role": "debug", "step_key": "init", "call_index": 0, "prompt": "p", "answer": "redone"},  # after a resume
        {"role": "debug", "step_key": "init", "call_index": 2, "prompt": "p", "answer": None, "error": "HTTP 500"},
    ]
    cassette = make_cassette(run, rows)
    assert len(cassette["calls"]) == 3 and cassette["config"] == {"num_models": 3}
    client = ReplayClient(cassette)
    assert client.supports_search
    assert client.complete(Request("debug", "p", "m", step="init", index=0)).text == "redone"
    assert client.complete(Request("debug", "p", "m", step="init", index=1)).text == "second"
    assert "prompt differs" in client.complete(Request("debug", "other", "m", step="init", index=1)).model
    with pytest.raises(FatalError, match="no answer for step 'init', role debug, call #3"):
        client.complete(Request("debug", "p", "m", step="init", index=2))
