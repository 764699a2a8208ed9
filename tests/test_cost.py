"""The cost cap holds: every model in use is priced (or refused under a cap), each call reserves its worst case
before it is made (across parallel tracks), and thinking, tool-use and search fees are counted.

Pricing lookups, the cost meter under concurrency, the arithmetic of worst case and actual cost, the run-config
check, the CLI (`--price`, exit 2 on an unpriced model under a cap) and the view functions the New run page and
the Run dashboard draw from. The pages themselves: tests/test_app_pages.py and tests/test_run_pages.py."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from mlestar_core import cli, views
from mlestar_core.brains.base import CostCapReached
from mlestar_core.brains.llm import secrets
from mlestar_core.brains.llm.budget import (
    PROMPT_OVERHEAD_TOKENS,
    SEARCH_QUERIES,
    SEARCH_TOOL_TOKENS,
    CostMeter,
    actual_cost,
    basis,
    prompt_tokens,
    worst_case,
)
from mlestar_core.brains.llm.pricing import (
    DEFAULT_PRICES,
    LOCAL,
    PER_PROMPT,
    PER_QUERY,
    USER,
    PriceBook,
    is_local_url,
    models_in_use,
    price_book,
    price_problems,
    unpriced_models,
)
from mlestar_core.brains.llm.settings import LLMSettings
from mlestar_core.config import ConfigError, RunConfig, check_config, cost_problems
from mlestar_core.service import RunManager
from mlestar_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
FLASH = "gemini-3.5-flash"


# -- prices: what is known, what is not -----------------------------------------------------------------


@pytest.mark.parametrize("alias", ["gemini-flash-latest", "gemini-pro-latest", "gemini-flash-lite-latest",
                                   "models/gemini-flash-latest", "gemini-3.5-pro", "gemini-3-pro",
                                   "gemini-3.5-flash-latest", "gemini-3.5-flash-image", "gemini-2.5-flash-preview-tts",
                                   "gemini-3.5-flash-exp", "gemini"])
def test_aliases_and_other_variants_have_no_price(alias: str) -> None:
    assert PriceBook().price(alias) is None


@pytest.mark.parametrize(("model", "expected"), [
    ("gemini-3.5-flash-001", (1.50, 9.00)),
    ("models/gemini-3.5-flash", (1.50, 9.00)),
    ("publishers/google/models/gemini-2.5-pro", (1.25, 10.00)),
    ("GEMINI-3.5-FLASH", (1.50, 9.00)),
    ("gemini-3-pro-preview", (2.00, 12.00)),
    ("gemini-3-pro-preview-11-2025", (2.00, 12.00)),
    ("gemini-2.5-flash-2025-06-17", (0.30, 2.50)),
    ("gemini-3.5-flash-lite", (0.50, 3.00)),  # the Lite model's own price, not Flash's
    ("gemini-3.5-flash-lite-001", (0.50, 3.00)),
    ("gemini-2.5-flash-lite", (0.10, 0.40)),
])
def test_names_and_version_suffixes_find_their_price(model: str, expected: tuple[float, float]) -> None:
    price = PriceBook().price(model)
    assert price is not None and (price.input, price.output) == expected


def test_a_prefix_is_not_a_version() -> None:
    # Whatever the table holds: a known name never prices a longer, different model.
    table = PriceBook({"gemini-9-flash": [1.0, 2.0], "gemini-9-pro": [3.0, 4.0]})
    assert table.price("gemini-9-flash-lite") is None
    assert table.price("gemini-9-pro-preview") is None
    found = table.price("gemini-9-flash-002")
    assert found is not None and (found.input, found.output) == (1.0, 2.0)
    assert PriceBook({"gemini-3-pro": [1, 2]}).price("gemini-3-pro-preview").input == 2.0  # the table's own entry


def test_every_built_in_model_has_a_search_fee_on_its_basis() -> None:
    for model, price in DEFAULT_PRICES.items():
        if model.startswith("gemini-3"):
            assert (price.search, price.search_basis) == (14.0, PER_QUERY), model
        else:
            assert (price.search, price.search_basis) == (35.0, PER_PROMPT), model


def test_user_prices_extend_and_override_the_table() -> None:
    book = PriceBook({"gemini-flash-latest": [1.5, 9.0], "gemini-2.5-flash": [1.0, 2.0], "models/my-model": [1, 2, 5],
                      "gemini-3.5-flash": [1.0, 2.0]})
    alias = book.price("gemini-flash-latest")
    assert (alias.input, alias.output, alias.search, alias.search_basis, alias.source) == (1.5, 9.0, 14.0, PER_QUERY,
                                                                                           USER)
    flash25 = book.price("gemini-2.5-flash")  # no third number: the model's own search fee and basis stay
    assert (flash25.input, flash25.search, flash25.search_basis) == (1.0, 35.0, PER_PROMPT)
    assert book.price("my-model").search == 5.0 and book.price("models/my-model").input == 1.0
    assert book.price("gemini-3.5-flash").input == 1.0 and book.price("gemini-3.5-flash-001").input == 1.0
    assert price_problems({"a": [1, 2], "b": [1], "c": [1, -2], "d": ["x", 1], "e": [1, 2, 3, 4]}) == [
        "the price of b: a price is [USD per 1M input tokens, USD per 1M output tokens] with an optional third "
        "number, USD per 1000 web searches",
        "the price of c: a price must be finite numbers >= 0, not [1.0, -2.0]",
        "the price of d: a price must be numbers, not ['x', 1]",
        "the price of e: a price is [USD per 1M input tokens, USD per 1M output tokens] with an optional third "
        "number, USD per 1000 web searches"]


@pytest.mark.parametrize(("url", "local"), [
    ("http://localhost:11434/v1", True), ("http://127.0.0.1:8000/v1", True), ("http://127.3.4.5/v1", True),
    ("http://[::1]:8080/v1", True), ("localhost:1234", True), ("http://vllm.localhost/v1", True),
    ("https://api.example.com/v1", False), ("http://10.0.0.5:8000/v1", False), ("http://localhost.evil.com", False),
    ("", False),
])
def test_local_servers(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_unpriced_models_covers_every_model_in_use() -> None:
    assert unpriced_models("gemini", LLMSettings(), FLASH) == []
    s = LLMSettings(model="gemini-3.5-pro", role_models={"debug": "gemini-pro-latest", "merge": "gemini-2.5-pro",
                                                          "check_leakage": "gemini-3.5-pro"})
    assert models_in_use("gemini", s, FLASH) == ["gemini-3.5-pro", "gemini-pro-latest", "gemini-2.5-pro"]
    assert unpriced_models("gemini", s, FLASH) == ["gemini-3.5-pro", "gemini-pro-latest"]
    s.prices = {"gemini-3.5-pro": [2.5, 15.0]}
    assert unpriced_models("gemini", s, FLASH) == ["gemini-pro-latest"]
    only_role = LLMSettings(role_models={"plan_refinement": "gemini-flash-latest"})
    assert unpriced_models("gemini", only_role, FLASH) == ["gemini-flash-latest"]  # the role model too
    # Replay: nothing is asked of a model. Offline: no model at all.
    assert unpriced_models("replay", s, "") == [] and unpriced_models("offline", s, "") == []


def test_local_openai_servers_are_free_remote_ones_unknown() -> None:
    assert unpriced_models("openai", LLMSettings(model="qwen3:8b"), "llama3.1") == []  # the default: Ollama here
    here = LLMSettings(model="qwen3:8b", base_url="http://127.0.0.1:8000/v1", role_models={"debug": "x"})
    assert unpriced_models("openai", here, "llama3.1") == []
    assert price_book("openai", here).price("qwen3:8b").source == LOCAL
    remote = LLMSettings(model="gpt-x", base_url="https://api.example.com/v1", role_models={"debug": "gpt-y"})
    assert unpriced_models("openai", remote, "llama3.1") == ["gpt-x", "gpt-y"]
    remote.prices = {"gpt-x": [1, 4], "gpt-y": [0.1, 0.4]}
    assert unpriced_models("openai", remote, "llama3.1") == []
    # A local model priced by the user (its electricity) costs what the user says.
    assert price_book("openai", LLMSettings(prices={"qwen3:8b": [0.01, 0.02]})).price("qwen3:8b").input == 0.01
    # Gemini through a local proxy or test server still bills Google's rates.
    assert price_book("gemini", LLMSettings(base_url="http://localhost:9999")).price("gemini-flash-latest") is None


# -- worst case, actual cost, basis -------------------------------------------------------------------


def test_worst_case_is_the_prompt_plus_the_whole_output_limit_plus_search() -> None:
    book = PriceBook()
    # A token per UTF-8 byte bounds any byte-fallback tokenizer; "é" is two bytes.
    assert prompt_tokens("abc") == 3 + PROMPT_OVERHEAD_TOKENS and prompt_tokens("é") == 2 + PROMPT_OVERHEAD_TOKENS
    assert prompt_tokens(936) == 1000 and prompt_tokens("x" * 936) == 1000
    assert worst_case(FLASH, 936, 1000, False, book) == pytest.approx((1000 * 1.50 + 1000 * 9.00) / 1e6)
    assert worst_case(FLASH, "x" * 936, 1000, False, book) == worst_case(FLASH, 936, 1000, False, book)
    grounded = ((1000 + SEARCH_TOOL_TOKENS) * 1.50 + 1000 * 9.00) / 1e6 + SEARCH_QUERIES * 14 / 1000
    assert worst_case(FLASH, 936, 1000, True, book) == pytest.approx(grounded)
    # Gemini 2.5 bills one fee per grounded prompt, however many searches.
    assert worst_case("gemini-2.5-flash", 936, 1000, True, book) == \
        pytest.approx(((1000 + SEARCH_TOOL_TOKENS) * 0.30 + 1000 * 2.50) / 1e6 + 35 / 1000)
    # A prompt over 200k tokens is billed at the Pro model's long-context rates.
    assert worst_case("gemini-3.1-pro-preview", 299_936, 0, False, book) == pytest.approx(300_000 * 4.00 / 1e6)
    assert worst_case("gemini-3.1-pro-preview", 199_936, 0, False, book) == pytest.approx(200_000 * 2.00 / 1e6)
    assert worst_case("gemini-flash-latest", 10, 10, False, book) == math.inf
    assert worst_case("gemini-flash-latest", 936, 1000, False, book, fallback_model=FLASH) == \
        worst_case(FLASH, 936, 1000, False, book)
    assert worst_case("llama3.1", 10**6, 10**6, False, price_book("openai", LLMSettings())) == 0.0


def test_actual_cost_counts_thinking_tool_use_and_search() -> None:
    book = PriceBook()
    # tokens_in includes 4 000 tool-use tokens (search results), tokens_out 1 500 thinking tokens.
    tokens = (10_000 * 1.50 + 2_000 * 9.00) / 1e6
    assert actual_cost(FLASH, 10_000, 2_000, 0, False, book) == pytest.approx(tokens)
    assert actual_cost(FLASH, 10_000, 2_000, 3, True, book) == pytest.approx(tokens + 3 * 14 / 1000)
    assert actual_cost(FLASH, 10_000, 2_000, 0, True, book) == pytest.approx(tokens + 14 / 1000)  # grounded: >= 1
    assert actual_cost("gemini-2.5-flash", 1000, 1000, 5, True, book) == \
        pytest.approx((1000 * 0.30 + 1000 * 2.50) / 1e6 + 35 / 1000)  # one grounded prompt, not five
    assert actual_cost("gemini-2.5-flash", 1000, 1000, 0, False, book) == pytest.approx(2800 / 1e6)
    # The server reports a version we do not know: the model asked for prices it.
    assert actual_cost("gemini-3.5-flash-preview-x", 10_000, 2_000, 0, False, book, fallback_model=FLASH) == \
        pytest.approx(tokens)
    assert actual_cost("unknown", 10**6, 10**6, 9, True, book) == 0.0
    # An alias the user priced answers as a known version: the user's price, the one the reservation used, wins.
    mine = PriceBook({"gemini-flash-latest": [0.5, 1.0]})
    assert actual_cost("gemini-3.5-flash-001", 10**6, 10**6, 0, False, mine, fallback_model="gemini-flash-latest") \
        == pytest.approx(1.5)
    assert actual_cost("gemini-3.5-flash-001", 10**6, 10**6, 0, False, mine, fallback_model=FLASH) == \
        pytest.approx(10.5)


def test_basis_says_how_the_estimate_is_made() -> None:
    book = price_book("gemini", LLMSettings())
    assert basis([FLASH], book, 16384, False) == (
        "gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out; thinking billed as output; reserve 16,384 output "
        "tokens per call")
    assert basis([FLASH], book, 16384, True) == (
        "gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out, search $14 per 1000 queries; thinking billed as "
        "output; search results billed as input; reserve 16,384 output tokens per call (a grounded call: 20,000 "
        "more input tokens and 10 searches)")
    mixed = basis([FLASH, "gemini-pro-latest", "gemini-2.5-pro"], book, 8192, False)
    assert mixed.startswith("gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out; gemini-pro-latest: no known "
                            "price (counted as $0); gemini-2.5-pro at $1.25/$10.00 per 1M tokens in/out "
                            "($2.50/$15.00 over 200k prompt tokens)")
    assert basis(["llama3.1"], price_book("openai", LLMSettings()), 16384, False) == "llama3.1: free (local server)"
    mine = PriceBook({"my-model": [0.075, 0.3]})
    assert basis(["my-model"], mine, 100, False).startswith("my-model at $0.075/$0.30 per 1M tokens in/out (your "
                                                            "price)")


# -- the meter --------------------------------------------------------------------------------------------


def test_a_reservation_that_would_overshoot_is_refused() -> None:
    meter = CostMeter(1.0, spent=0.5)
    a = meter.reserve(0.3, "debug on gemini-3.5-flash")
    assert (meter.spent, meter.reserved, meter.remaining, meter.in_flight) == (0.5, pytest.approx(0.3),
                                                                               pytest.approx(0.2), 1)
    with pytest.raises(CostCapReached, match=r"cost cap \$1.00 reached: spent \$0.5000, \$0.3000 reserved by calls "
                                             r"in flight, and merge could cost up to \$0.2500"):
        meter.reserve(0.25, "merge")
    assert meter.exhausted  # a refused call wraps the run up
    assert meter.settle(a, 0.1) == pytest.approx(0.1)
    assert meter.settle(a, 0.1) == 0.0  # settled once only
    assert (meter.spent, meter.reserved) == (pytest.approx(0.6), 0.0)
    b = meter.reserve(0.4)  # exactly what is left fits
    meter.release(b)  # it failed before costing anything
    meter.release(b)
    assert (meter.spent, meter.reserved) == (pytest.approx(0.6), 0.0)


def test_an_unpriced_call_cannot_run_under_a_cap_but_can_without() -> None:
    with pytest.raises(CostCapReached, match="plan_refinement on gemini-flash-latest: its cost cannot be estimated "
                                             r"\(the model has no known price\), so it cannot run under the \$5.00"):
        CostMeter(5.0).reserve(math.inf, "plan_refinement on gemini-flash-latest")
    free = CostMeter(None)
    r = free.reserve(math.inf)
    assert free.reserved == 0.0 and free.remaining is None and not free.exhausted
    free.settle(r, 0.0)
    big = free.reserve(1e9)
    free.settle(big, 12.5)
    assert free.spent == 12.5 and not free.exhausted


def test_the_cap_and_spent_are_settable_for_the_pipeline() -> None:
    meter = CostMeter(None)
    meter.cap, meter.spent = 2.0, 1.9  # what Pipeline sets: the run's cap and Store.brain_spent after a resume
    with pytest.raises(CostCapReached):
        meter.reserve(0.2)
    meter.spent = 2.5
    assert meter.exhausted and meter.remaining == 0.0


def test_parallel_tracks_never_reserve_more_than_the_cap() -> None:
    """8 threads ask at once for a call whose worst case is $0.30 under a $1.00 cap: exactly three may go (a
    check-then-pay cap would let all eight through, $2.40 of worst case)."""
    meter = CostMeter(1.0)
    start = threading.Barrier(8)
    granted, refused = [], []

    def track() -> None:
        start.wait()
        try:
            granted.append(meter.reserve(0.3))
        except CostCapReached:
            refused.append(1)

    threads = [threading.Thread(target=track) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(granted), len(refused)) == (3, 5)
    for r in granted:
        meter.settle(r, 0.3)  # the worst case happened to every call
    assert meter.spent == pytest.approx(0.9) and meter.reserved == 0.0


def test_concurrent_calls_settling_less_than_reserved_never_exceed_the_cap() -> None:
    meter = CostMeter(2.0)
    worst = 0.07
    lock = threading.Lock()
    paid: list[float] = []
    stats = {"refused": 0}

    def track(seed: int) -> None:
        i = 0
        while True:
            i += 1
            try:
                r = meter.reserve(worst, f"track {seed}")
            except CostCapReached:
                with lock:
                    stats["refused"] += 1
                return
            time.sleep(0.0005 * (seed % 3))  # the call is in flight
            cost = worst * ((seed * 7 + i * 13) % 10) / 10  # 0 .. 90 % of the worst case
            if i % 11 == 0:
                meter.release(r)  # a failed call costs nothing
                continue
            meter.settle(r, cost)
            with lock:
                paid.append(cost)

    threads = [threading.Thread(target=track, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats["refused"] == 8  # every track went on until the cap stopped it
    assert sum(paid) == pytest.approx(meter.spent)
    assert meter.spent <= 2.0 and meter.reserved == 0.0
    assert meter.spent > 2.0 - worst - 1e-9  # and it stopped only when the next worst case no longer fitted


# -- the run config and where runs are created ----------------------------------------------------------

MESSAGE = "model {} has no known price: give its price (USD per 1M input/output tokens) or remove the cost cap"


def test_a_cap_with_an_unpriced_model_is_refused() -> None:
    unpriced = RunConfig(brain="gemini", llm=LLMSettings(model="gemini-3.5-pro"), cost_cap=1.0)
    assert cost_problems(unpriced) == [MESSAGE.format("gemini-3.5-pro")]
    with pytest.raises(ConfigError, match="model gemini-3.5-pro has no known price"):
        check_config(unpriced)
    role = RunConfig(brain="gemini", llm=LLMSettings(role_models={"debug": "gemini-flash-latest"}), cost_cap=1.0)
    assert cost_problems(role) == [MESSAGE.format("gemini-flash-latest")]
    assert cost_problems(RunConfig(brain="gemini", llm=LLMSettings(model="gemini-3.5-pro"))) == []  # no cap
    priced = RunConfig(brain="gemini", llm=LLMSettings(model="gemini-3.5-pro", prices={"gemini-3.5-pro": [2, 12]}),
                       cost_cap=1.0)
    assert cost_problems(priced) == [] and check_config(priced) is None
    assert cost_problems(RunConfig(brain="gemini", cost_cap=0.0)) == [
        "the cost cap must be a positive number of USD, not 0.0"]
    assert cost_problems(RunConfig(brain="openai", llm=LLMSettings(model="anything"), cost_cap=1.0)) == []  # local
    assert cost_problems(RunConfig(brain="offline", cost_cap=1.0)) == []
    bad = RunConfig(brain="gemini", llm=LLMSettings(prices={FLASH: [1]}))
    assert cost_problems(bad) == ["the price of gemini-3.5-flash: a price is [USD per 1M input tokens, USD per 1M "
                                  "output tokens] with an optional third number, USD per 1000 web searches"]


def test_the_run_manager_refuses_before_a_run_exists(tmp_path: Path) -> None:
    from mlestar_core.task import load_task

    store = Store(tmp_path / "store")
    manager = RunManager(store)
    config = RunConfig(brain="gemini", llm=LLMSettings(model="gemini-flash-latest"), cost_cap=3.0)
    with pytest.raises(ConfigError, match="model gemini-flash-latest has no known price"):
        manager.start(load_task(ROOT / "demo_tasks" / "breast-cancer"), config)
    assert store.list_runs() == []


def test_the_run_manager_reports_what_a_live_run_holds(tmp_path: Path) -> None:
    manager = RunManager(Store(tmp_path / "store"))
    meter = CostMeter(1.0)
    meter.reserve(0.25)
    manager._pipelines["r1"] = SimpleNamespace(brain=SimpleNamespace(meter=meter))  # type: ignore[assignment]
    manager._pipelines["r2"] = SimpleNamespace(brain=SimpleNamespace())  # type: ignore[assignment]
    assert manager.reserved_usd("r1") == 0.25
    assert manager.reserved_usd("r2") is None and manager.reserved_usd("elsewhere") is None


# -- the command line -------------------------------------------------------------------------------------


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(secrets, "SECRETS_FILE", tmp_path / "no-secrets.toml")


@pytest.fixture
def tiny_task(make_task_dir) -> Path:  # noqa: ANN001
    train = pd.DataFrame({"x": range(40), "y": [i % 7 for i in range(40)], "label": [i % 2 for i in range(40)]})
    return make_task_dir(train, description="Predict `label`; the metric is accuracy.")


def _run(tmp_path: Path, task: Path, *extra: str) -> int:
    return cli.main(["--store", str(tmp_path / "store"), "run", "--task", str(task), "--out",
                     str(tmp_path / "out"), "--target", "label", *extra])


def test_cli_refuses_an_unpriced_model_under_a_cap(tmp_path: Path, tiny_task: Path, no_keys: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(tmp_path, tiny_task, "--brain", "gemini", "--model", "gemini-flash-latest", "--cost-cap", "1")
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"error: {MESSAGE.format('gemini-flash-latest')} (--price MODEL=IN,OUT)"
    assert Store(tmp_path / "store").list_runs() == []
    # A per-role model is in use too.
    code = _run(tmp_path, tiny_task, "--brain", "gemini", "--role-model", "debug=gemini-pro-latest",
                "--cost-cap", "1")
    assert code == 2 and "model gemini-pro-latest has no known price" in capsys.readouterr().err


def test_cli_price_gives_a_model_its_price(tmp_path: Path, tiny_task: Path, no_keys: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Priced: the cap check passes, and the next thing missing is the key (no run is created either way).
    code = _run(tmp_path, tiny_task, "--brain", "gemini", "--model", "gemini-flash-latest", "--cost-cap", "1",
                "--price", "gemini-flash-latest=1.5,9")
    err = capsys.readouterr().err
    assert code == 2 and "no known price" not in err and "no Gemini API key" in err
    assert Store(tmp_path / "store").list_runs() == []


def test_cli_price_parsing(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"a": [1, 2], "b": [3, 4, 5]}')
    parser_args = ["--store", str(tmp_path), "run", "--task", "t", "--out", "o", "--brain", "gemini"]
    captured: dict[str, RunConfig] = {}

    def fake_run(args) -> int:  # noqa: ANN001
        captured["config"] = cli._config_from_args(args)
        return 0

    original = cli.cmd_run
    cli.cmd_run = fake_run  # type: ignore[assignment]
    try:
        cli.main([*parser_args, "--prices", str(prices), "--price", "a=0.5,1.5", "--price", "models/c=1,2,30",
                  "--price", "x=y=1,2"])
    finally:
        cli.cmd_run = original  # type: ignore[assignment]
    assert captured["config"].llm.prices == {"a": [0.5, 1.5], "b": [3.0, 4.0, 5.0], "models/c": [1.0, 2.0, 30.0],
                                             "x=y": [1.0, 2.0]}
    for bad in ("gemini-3.5-pro=1", "gemini-3.5-pro", "=1,2", "m=1,-2", "m=a,b", "m=1,2,3,4"):
        with pytest.raises(cli.UsageError, match=r"--price .*MODEL=IN,OUT"):
            cli._parse_price(bad)


def test_cli_exit_code_in_a_real_process(tmp_path: Path, tiny_task: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(tmp_path / "store"), "run", "--task",
                           str(tiny_task), "--out", str(tmp_path / "out"), "--target", "label", "--brain", "openai",
                           "--base-url", "https://api.example.com/v1", "--model", "gpt-x", "--cost-cap", "0.5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: {MESSAGE.format('gpt-x')} (--price MODEL=IN,OUT)"


# -- what the pages draw ------------------------------------------------------------------------------


def test_model_prices_for_the_new_run_page() -> None:
    s = LLMSettings(model="", role_models={"debug": "gemini-pro-latest", "retrieve_models": "gemini-2.5-flash"})
    rows = views.model_prices("gemini", s)
    assert [(r.model, r.who, r.known, r.search) for r in rows] == [
        (FLASH, "every other role", True, False), ("gemini-pro-latest", "debug", False, False),
        ("gemini-2.5-flash", "retrieve_models", True, True)]  # the retrieval model pays the search fee
    assert rows[2].text == "gemini-2.5-flash at $0.30/$2.50 per 1M tokens in/out, search $35 per 1000 grounded prompts"
    assert views.model_prices("gemini", LLMSettings())[0].who == "every role"
    assert views.model_prices("replay", s) == [] and views.model_prices("offline", s) == []
    assert views.cost_blocker("gemini", s, None) is None
    assert views.cost_blocker("gemini", s, 2.0) == ("Model gemini-pro-latest has no known price: give its price (USD "
                                                    "per 1M input/output tokens) or remove the cost cap.")
    assert "calls count as $0" in views.unpriced_text("x", None)
    assert "remove the cost cap" in views.unpriced_text("x", 1.0)


def test_form_prices_keeps_only_what_differs_from_the_table() -> None:
    s = LLMSettings(model="gemini-flash-latest")
    entries = [(FLASH, 1.5, 9.0, 14.0),  # the table's price: nothing to store
               ("gemini-flash-latest", 1.5, 9.0, 14.0),  # unknown, priced: stored (the default search fee: 2 numbers)
               ("gemini-pro-latest", 2.0, None, None),  # half a price is no price
               ("gemini-2.5-pro", 1.25, 10.0, 20.0),  # another search fee: 3 numbers
               ("gemini-2.5-flash", 0.3, 3.0, None)]
    assert views.form_prices("gemini", s, entries) == {"gemini-flash-latest": [1.5, 9.0],
                                                       "gemini-2.5-pro": [1.25, 10.0, 20.0],
                                                       "gemini-2.5-flash": [0.3, 3.0]}
    assert views.form_prices("openai", LLMSettings(model="qwen"), [("qwen", 0.0, 0.0, None)]) == {}  # local: free


def test_reserve_text_explains_the_cap() -> None:
    text = views.reserve_text("gemini", LLMSettings())
    one = worst_case(FLASH, views.TYPICAL_PROMPT_CHARS, 16384, False, PriceBook())
    grounded = worst_case(FLASH, views.TYPICAL_PROMPT_CHARS, 16384, True, PriceBook())
    assert one == pytest.approx((12_000 + PROMPT_OVERHEAD_TOKENS) * 1.5 / 1e6 + 16384 * 9 / 1e6)
    assert text.startswith("Before each call its worst case is held against the cap (the prompt at a token per "
                           "byte, and the whole 16,384-token output limit at the output rate): up to "
                           f"{views.fmt_usd(one)} on gemini-3.5-flash for a 12,000-character prompt, "
                           f"{views.fmt_usd(grounded)} for the retrieval call with Google Search.")
    assert views.reserve_text("openai", LLMSettings()).startswith("The models in use cost nothing here")


def test_spend_view_for_the_dashboard() -> None:
    config = {"cost_cap": 5.0, "llm": {"model": "", "search": False, "max_output_tokens": 8192}}
    spend = views.spend_view("gemini", config, 0.42, 0.16)
    assert spend.text == "Spend $0.420 of $5.00 cap (reserved $0.160 in flight)"
    assert spend.fraction == pytest.approx(0.084)
    assert spend.basis_text == ("Estimate: gemini-3.5-flash at $1.50/$9.00 per 1M tokens in/out; thinking billed as "
                                "output; reserve 8,192 output tokens per call.")
    assert views.spend_view("gemini", {}, 0.5, None).text == "Spend $0.500, no cost cap"
    assert views.spend_view("replay", {"cost_cap": 1}, 0, 0).basis_text == \
        "Estimate: replayed answers were recorded: they cost nothing."
    assert views.spend_view("offline", {}, 0, 0).basis_text == ""
