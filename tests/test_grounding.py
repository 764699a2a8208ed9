"""Search grounding shown honestly: each model card gets the sources whose grounding supports fall in its part
of the answer (not the whole answer's list), cassettes carry the grounding so a replay attributes the same, and
the pages show Google's search suggestions (as delivered) and queries next to the grounded answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from apptest_helpers import open_page, texts
from conftest import RunBuilder
from streamlit.testing.v1 import AppTest

from mlestar_core import views
from mlestar_core.brains.llm.answers import card_sources, parse_model_cards
from mlestar_core.brains.llm.clients import Request
from mlestar_core.brains.llm.replay import ReplayClient, load_cassette, make_cassette
from mlestar_core.model import ModelCard
from mlestar_core.store import Store
from studio.runpages import BrainCallKeys

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")

SOURCES = [{"title": "XGBoost docs", "uri": "https://xgboost.readthedocs.io/"},
           {"title": "Kaggle survey", "uri": "https://www.kaggle.com/survey"},
           {"title": "LightGBM docs", "uri": "https://lightgbm.readthedocs.io/"},
           {"title": "ML blog", "uri": "https://blog.example.com/tabular"}]

XGB_WHY = "XGBoost wins most tabular competitions."
LGBM_WHY = "LightGBM trains fast on large tables."
OUTRO = "These picks follow the search results."
ANSWER = f"""Voilà — three models for this tabular task (données 🚀, 表格数据):

```json
[
  {{"model_name": "XGBoost", "family": "gbdt", "why": "{XGB_WHY}",
   "example_code": "from xgboost import XGBClassifier\\nclf = XGBClassifier(**{{'n_estimators': 300}})"}},
  {{"model_name": "LightGBM", "family": "gbdt", "why": "{LGBM_WHY}", "example_code": "LGBMClassifier()"}},
  {{"model_name": "Logistic regression", "family": "linear", "why": "A strong linear baseline.",
   "example_code": "LogisticRegression()"}}
]
```
{OUTRO}"""

ENTRY_POINT = ('<style>.container{display:flex;padding:8px 12px}.chip{border:solid 1px;border-radius:16px}</style>'
               '<div class="container"><svg class="logo-light" width="52" height="52"><circle r="9"/></svg>'
               '<div class="carousel"><a class="chip" href="https://www.google.com/search?q=best+tabular+models">'
               'best tabular models</a></div></div>')
QUERIES = ["best tabular models", "xgboost vs lightgbm"]


def support(text: str, segment: str, chunks: list[int], *, with_text: bool = True) -> dict[str, Any]:
    start = text.index(segment)  # a character offset, as the client gives it
    s: dict[str, Any] = {"start": start, "end": start + len(segment), "chunks": chunks}
    return {**s, "text": segment} if with_text else s


def supports(text: str = ANSWER, *, with_text: bool = True) -> list[dict[str, Any]]:
    return [support(text, XGB_WHY, [0, 1], with_text=with_text), support(text, LGBM_WHY, [2], with_text=with_text),
            support(text, OUTRO, [3], with_text=with_text)]


def cards(text: str = ANSWER) -> list[ModelCard]:
    return parse_model_cards(text, 3)


def titles(per_card: list[list[dict[str, Any]]]) -> list[list[str]]:
    return [[s["title"] for s in sources] for sources in per_card]


# -- card_sources ---------------------------------------------------------------------------------------------


def test_each_card_gets_only_the_sources_of_its_own_supports() -> None:
    per_card = card_sources(ANSWER, cards(), SOURCES, supports())
    # Disjoint supports give disjoint sources; the card no segment falls in gets none (not the whole list), and
    # the source of the prose after the JSON belongs to no card.
    assert titles(per_card) == [["XGBoost docs", "Kaggle survey"], ["LightGBM docs"], []]
    assert per_card[0][0] == SOURCES[0] and per_card[0][0] is not SOURCES[0]  # copies


def test_unicode_before_the_cards_does_not_shift_attribution() -> None:
    text = "Ünïcödé 🚀🚀🚀 " * 40 + ANSWER  # 4-byte characters: byte offsets would land far off
    assert titles(card_sources(text, cards(text), SOURCES, supports(text, with_text=False))) == \
        [["XGBoost docs", "Kaggle survey"], ["LightGBM docs"], []]


def test_sources_are_deduplicated_in_the_order_of_their_first_support() -> None:
    text = ANSWER
    extra = support(text, '"XGBoost"', [1])  # the card's name: before its "why" in the text
    duplicate = [*SOURCES, {"title": "XGBoost docs again", "uri": SOURCES[0]["uri"]}]
    per_card = card_sources(text, cards(), duplicate, [support(text, XGB_WHY, [4, 0]), extra])
    assert titles(per_card)[0] == ["Kaggle survey", "XGBoost docs again"]  # one entry per page (URI)


def test_card_spans_survive_other_answer_shapes() -> None:
    why = ["Boosted trees for tables.", "A linear baseline."]
    bare = ('Here {curly prose} and "quotes": {"models": [{"name": "XGB", "why": "' + why[0] + '"}, '
            '{"name": "Logit", "why": "' + why[1] + '"}]} done.')  # no fence, a wrapper object
    lenient = ('```json\n[{"model_name": "XGB", "why": "' + why[0] + '",},\n'
               ' {"model_name": "Logit", "why": "' + why[1] + '",},]\n```')  # trailing commas
    for text in (bare, lenient):
        sup = [support(text, why[1], [1])]
        assert titles(card_sources(text, parse_model_cards(text, 2), SOURCES, sup)) == [[], ["Kaggle survey"]]
    names = '["XGBoost", "LightGBM"]'  # a list of bare names: each card is its string
    assert titles(card_sources(names, parse_model_cards(names, 2), SOURCES, [support(names, "LightGBM", [2])])) == \
        [[], ["LightGBM docs"]]


def test_a_segment_touching_a_card_only_with_punctuation_does_not_count() -> None:
    text = ANSWER
    second = text.index('{"model_name": "LightGBM"')
    assert text[second - 6:second + 2] == '"},\n  {"'  # the end of the first card, the start of the second
    sup = [{"start": second - 6, "end": second + 2, "chunks": [3]},  # punctuation only: no card's
           {"start": text.index(LGBM_WHY) - 4, "end": text.index(LGBM_WHY) + 9, "chunks": [2]}]
    per_card = card_sources(text, cards(), SOURCES, sup)
    assert titles(per_card) == [[], ["LightGBM docs"], []]


def test_unusable_supports_are_left_out() -> None:
    sup = [{"start": 5, "chunks": [0]},  # no end
           {"start": 40, "end": 20, "chunks": [0]},  # backwards
           {"start": 0, "end": 10**6, "chunks": [0]},  # past the text
           {**support(ANSWER, XGB_WHY, []), "chunks": [9, -1, "x"]},  # no valid source index
           "not a dict"]
    assert card_sources(ANSWER, cards(), SOURCES, sup) == [[], [], []]  # type: ignore[list-item]
    # Offsets that do not hold the support's own text are corrected to where that text is.
    moved = {**support(ANSWER, LGBM_WHY, [2]), "start": 3, "end": 3 + len(LGBM_WHY)}
    assert titles(card_sources(ANSWER, cards(), SOURCES, [moved])) == [[], ["LightGBM docs"], []]
    assert card_sources(ANSWER, [ModelCard("Not in the answer", "", "", "")], SOURCES, supports()) == [[]]


# -- replay ---------------------------------------------------------------------------------------------------


def grounded_run(b: RunBuilder, *, grounding: bool = True) -> str:
    """A gemini run whose retrieval call searched, with the cards the brain makes of it."""
    rid = b.run("finished", brain="gemini")
    b.step(rid, "baseline", "baseline", result={"script_id": 1, "score": 0.5})
    b.step(rid, "retrieve", "retrieve", result=[])
    g = {"queries": QUERIES, "supports": supports(), "entry_point": ENTRY_POINT} if grounding else {}
    b.brain_call(rid, "retrieve_models", prompt="Find models", answer=ANSWER, tokens_in=900, tokens_out=300,
                 step_key="retrieve", model="gemini-3.5-flash", sources=SOURCES, grounding=g)
    per_card = card_sources(ANSWER, cards(), SOURCES, supports()) if grounding else [SOURCES] * 3
    for rank, (card, sources) in enumerate(zip(cards(), per_card, strict=True)):
        card.source, card.sources = "Google Search", sources
        b.store.add_model_card(rid, rank, card)
    return rid


def test_cassettes_carry_grounding_and_replay_attributes_the_same(run_builder: RunBuilder, tmp_path: Path) -> None:
    b = run_builder
    rid = grounded_run(b)
    path = tmp_path / "run.cassette.json"
    path.write_text(json.dumps(make_cassette(b.store.get_run(rid), b.store.table("brain_calls", rid))))
    cassette = load_cassette(path)
    assert cassette["version"] == 1
    c = ReplayClient(cassette).complete(Request("retrieve_models", "Find models", "m", step="retrieve"))
    assert (c.search_queries, c.search_entry_point, c.supports) == (QUERIES, ENTRY_POINT, supports())
    assert c.sources == SOURCES
    assert titles(card_sources(c.text, cards(c.text), c.sources, c.supports)) == \
        [["XGBoost docs", "Kaggle survey"], ["LightGBM docs"], []]

    # A cassette recorded before grounding was kept still loads and replays, without grounding.
    for call in cassette["calls"]:
        call.pop("grounding", None)
    path.write_text(json.dumps(cassette))
    c = ReplayClient(load_cassette(path)).complete(Request("retrieve_models", "Find models", "m", step="retrieve"))
    assert (c.search_queries, c.search_entry_point, c.supports, c.sources) == ([], "", [], SOURCES)


def test_views_of_the_retrieval_grounding(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = grounded_run(b)
    g = views.retrieval_grounding(b.store, rid)
    assert g is not None and g.recorded and (g.queries, g.entry_point, g.supports) == (QUERIES, ENTRY_POINT, 3)
    assert views.search_suggestions(b.store, rid) == [ENTRY_POINT]
    shown = views.model_cards(b.store.table("model_cards", rid), [])
    assert [views.card_sources_state(c, g) for c in shown] == ["own", "own", "none"]
    doc = views.suggestions_document(ENTRY_POINT)
    assert ENTRY_POINT in doc and "script-src" not in doc and "default-src 'none'" in doc  # no script runs

    # A later unusable answer does not count; a fallback to the knowledge base after it leaves no grounding.
    b.brain_call(rid, "retrieve_models", answer="nonsense", error="answer not usable", step_key="retrieve",
                 sources=SOURCES, grounding={"queries": ["x"], "supports": [], "entry_point": "<p>x</p>"})
    assert views.search_suggestions(b.store, rid) == [ENTRY_POINT]
    b.brain_call(rid, "retrieve_models", prompt="(no model call: ...)", answer="Fallback: kb", model="fallback")
    assert views.retrieval_grounding(b.store, rid) is None and views.search_suggestions(b.store, rid) == []

    legacy = grounded_run(b, grounding=False)  # recorded before grounding was kept: every card has every source
    g = views.retrieval_grounding(b.store, legacy)
    assert g is not None and not g.recorded and not g.entry_point
    assert {views.card_sources_state(c, g) for c in views.model_cards(b.store.table("model_cards", legacy), [])} \
        == {"whole answer"}
    no_search = b.run("finished", brain="gemini")
    b.brain_call(no_search, "retrieve_models", answer="[]", step_key="retrieve")
    assert views.retrieval_grounding(b.store, no_search) is None
    assert views.card_sources_state(shown[0], None) == "own"  # hand-made rows: the card's sources are its own


# -- pages ----------------------------------------------------------------------------------------------------


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunBuilder:
    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    AppTest.from_file(APP, default_timeout=60).run()  # services boot on the empty store (see test_run_pages)
    return RunBuilder(Store(root))


def iframes(at: AppTest) -> list[str]:
    return [str(e.proto.srcdoc) for e in at.get("iframe")]


def test_models_page_shows_each_cards_own_sources_and_the_suggestions(builder: RunBuilder) -> None:
    rid = grounded_run(builder)
    at = open_page("app_pages/models.py", rid)
    md = texts(at.markdown)
    assert ("**Grounded on** (2 web sources): [XGBoost docs](https://xgboost.readthedocs.io/) · "
            "[Kaggle survey](https://www.kaggle.com/survey)") in md
    assert "**Grounded on** (1 web source): [LightGBM docs](https://lightgbm.readthedocs.io/)" in md
    assert "**Grounded on:** no source in the grounded answer supports this card." in md
    assert "blog.example.com" not in md  # the prose's source supports no card
    assert "**Grounded with Google Search** · searched for: best tabular models · xgboost vs lightgbm" in md
    frames = iframes(at)
    assert len(frames) == 1 and ENTRY_POINT in frames[0]  # Google's snippet as delivered, in its own frame

    legacy = grounded_run(builder, grounding=False)
    at = open_page("app_pages/models.py", legacy)
    assert texts(at.markdown).count("**Sources of the whole answer** (4; this run was recorded before") == 3
    assert "recorded before the search queries and Google's search suggestions were kept" in texts(at.caption)
    assert not iframes(at)


def test_models_page_without_search(builder: RunBuilder) -> None:
    rid = builder.run("finished", brain="gemini")
    builder.brain_call(rid, "retrieve_models", answer="Fallback: kb", step_key="retrieve", model="knowledge base")
    builder.store.add_model_card(rid, 0, {"name": "xgb", "why": "w", "example_code": "x",
                                          "source": "bundled knowledge base (web search is turned off)"})
    at = open_page("app_pages/models.py", rid)
    assert "The retrieval answer was not grounded with Google Search" in texts(at.caption)
    assert "Grounded" not in texts(at.markdown) and not iframes(at)


def test_brain_calls_page_shows_queries_and_suggestions(builder: RunBuilder) -> None:
    rid = grounded_run(builder)
    call = builder.store.brain_call_list(rid)[0]["id"]
    at = open_page("app_pages/brain_calls.py", rid)
    assert not iframes(at)  # collapsed
    at.session_state[f"{BrainCallKeys.CALL}{call}"] = True
    at.run()
    assert not at.exception, at.exception
    assert "**Searched Google for:** best tabular models · xgboost vs lightgbm" in texts(at.markdown)
    assert [ENTRY_POINT in f for f in iframes(at)] == [True]
