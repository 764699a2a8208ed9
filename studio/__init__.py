"""UI helpers shared by the Streamlit pages (Streamlit allowed here; no business logic).

- `studio.nav`: the page files and titles, named once (app.py registers them, pages link to them)
- `studio.state`: session-state keys and `init_state()`; the selected run (session + `?run=`)
- `studio.resources`: the process-wide Store and RunManager (`get_services()`), starting runs
- `studio.widgets`: run picker, "no run selected" guard, status badge, formatting
"""
