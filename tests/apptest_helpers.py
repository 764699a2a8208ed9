"""Opening the Studio's pages in Streamlit's AppTest, as the run-page tests do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from studio import state

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(page: str, run_id: str | None = None, timeout: float = 60) -> AppTest:
    """app.py first (the router, as a browser gets it), with `?run=` when given, then `page`."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if run_id:
        at.query_params[state.QUERY_RUN] = run_id
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)
