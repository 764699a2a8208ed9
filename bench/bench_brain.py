"""Benchmark of the LLM brain's own overhead: what a role call costs on top of the model's latency.

Each call goes through the real google-genai SDK (or the urllib OpenAI client) to a local fake
server that answers instantly, then through prompt rendering, answer parsing, pricing and
redaction. The figure is what the app adds to every model call; real models take seconds.

Run: .venv/bin/python bench/bench_brain.py   (about 10 s)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere
sys.path.insert(0, str(ROOT / "tests"))  # the fake servers and the scripted expert live with the tests

from fakes import FakeGemini, FakeOpenAI, ScriptedExpert, scripted  # noqa: E402

from mlestar_core.brains.base import BrainCallRecord, BrainContext  # noqa: E402
from mlestar_core.brains.llm.brain import LLMBrain  # noqa: E402
from mlestar_core.brains.llm.gemini import GeminiClient  # noqa: E402
from mlestar_core.brains.llm.openai_compat import OpenAIClient  # noqa: E402
from mlestar_core.brains.llm.settings import LLMSettings  # noqa: E402
from mlestar_core.model import ModelCard  # noqa: E402
from mlestar_core.task import load_task  # noqa: E402

CALLS = 60


def bench(kind: str) -> None:
    expert = ScriptedExpert()
    ctx = BrainContext(task=load_task(ROOT / "demo_tasks" / "breast-cancer"))
    server_cls = FakeGemini if kind == "gemini" else FakeOpenAI
    with server_cls(scripted(expert)) as server:
        url = server.url if kind == "gemini" else server.url + "/v1"
        settings = LLMSettings(base_url=url)
        client = GeminiClient(settings, "bench-key") if kind == "gemini" else OpenAIClient(settings, None)
        brain = LLMBrain(client, settings, name=kind, default_model="gemini-3.5-flash")
        records: list[BrainCallRecord] = []
        brain.on_call = records.append
        times: dict[str, list[float]] = {"write_initial_solution": [], "extract_block": [], "write_ablation": []}
        for i in range(CALLS // 3):
            t0 = time.perf_counter()
            code = brain.write_initial_solution(ctx, ModelCard("Random forest", "", "", "bench"))
            times["write_initial_solution"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            brain.extract_block(ctx, code, [], "none", [])
            times["extract_block"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            brain.write_ablation(ctx, code)
            times["write_ablation"].append(time.perf_counter() - t0)
            if i == 0:
                prompt_kb = len(records[0].prompt) / 1024
        print(f"{kind}: {len(records)} calls, prompt of write_initial_solution {prompt_kb:.1f} KiB")
        for role, ts in times.items():
            print(f"  {role:<24} median {1000 * statistics.median(ts):6.1f} ms   p90 "
                  f"{1000 * sorted(ts)[int(0.9 * len(ts))]:6.1f} ms")


if __name__ == "__main__":
    bench("gemini")
    bench("openai")
