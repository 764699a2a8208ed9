"""UI helpers shared by the Streamlit pages in app_pages/ (Streamlit allowed here; no business logic: what a
page shows and decides comes from its module in mlestar_core/views/).

- `studio.nav`: the page files and titles, named once (app.py registers them, pages link to them)
- `studio.state`: session-state keys and `init_state()`; the selected run (session + `?run=`)
- `studio.resources`: the process-wide Store and RunManager (`get_services()`), starting runs
- `studio.auth`: who the viewer is, the sign-in page, the runs and upload folder the viewer may use
- `studio.widgets`: run picker, "no run selected" guard, status badge, flash message, script and diff views,
  downloads
- `studio.runpages`: the run pages' header, phase timeline and live-polling fragment, their widget keys
- `studio.steering`: Pause / Resume / Stop, resuming a paused run, pinned constraints, the plan review form, fork
- `studio.data_form`, `studio.brain_form`: the New run page's data / task / knobs and brain sections
- `studio.charts`: the Plotly figures of the run pages
"""
