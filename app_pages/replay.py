"""Replay: scrub through a finished run's events and see what the dashboard showed at that point
(phase timeline, best-score curve, scripts run, latest events). For demos and teaching."""

from __future__ import annotations

import streamlit as st

from mlestar_core.views import replay as view
from mlestar_core.views.common import active_seconds, fmt_score
from studio.auth import require_viewer
from studio.charts import best_score_chart
from studio.resources import get_store
from studio.runpages import ReplayKeys as K
from studio.runpages import empty_state, page_header, timeline
from studio.widgets import status_badge

require_viewer()  # first, even if this file runs on its own (see studio/auth.py)
info = page_header("Replay")
store = get_store()
events = store.events_after(info.id)  # read once: a finished run's feed does not change
total = len(events)
if not total:
    empty_state("This run has no events yet: start it, then come back to replay it.")
    st.stop()
if info.active:
    st.info(view.still_running_text(info.status, total), icon=":material/info:")
st.caption("Drag the slider (or press play) to see the run as the dashboard showed it after each event.")

if st.session_state.get(K.RUN) != info.id or st.session_state.get(K.N, 0) > total:  # another run opened
    st.session_state[K.RUN] = info.id
    st.session_state[K.N] = total
    st.session_state[K.PLAYING] = False
playing = bool(st.session_state.get(K.PLAYING))
STEP = view.play_step(total)
run_length = active_seconds(events)[-1]


def move(to: int) -> None:
    st.session_state[K.N] = max(0, min(total, to))


def player() -> None:
    if st.session_state.get(K.PLAYING):
        if st.session_state[K.N] >= total:
            st.session_state[K.PLAYING] = False
            st.rerun()  # the whole page: the fragment comes back without its timer
        move(st.session_state[K.N] + STEP)
    n = st.session_state[K.N]
    b = st.columns([1, 1, 1, 1, 1, 3])
    b[0].button("First", key=K.START, icon=":material/first_page:", help="Back to the first event",
                on_click=move, args=(0,), width="stretch")
    b[1].button("Back", key=K.PREV, icon=":material/chevron_left:", help="One event back", on_click=move,
                args=(n - 1,), width="stretch")
    if st.session_state.get(K.PLAYING):
        if b[2].button("Pause", key=K.PAUSE, icon=":material/pause:", width="stretch"):
            st.session_state[K.PLAYING] = False
            st.rerun()
    elif b[2].button("Play", key=K.PLAY, icon=":material/play_arrow:", type="primary", width="stretch",
                     help="Play the run from here (from the start if at the end)", disabled=total < 2):
        if n >= total:
            move(0)
        st.session_state[K.PLAYING] = True
        st.rerun()
    b[3].button("Next", key=K.NEXT, icon=":material/chevron_right:", help="One event forward", on_click=move,
                args=(n + 1,), width="stretch")
    b[4].button("Last", key=K.END, icon=":material/last_page:", help="The end of the run", on_click=move,
                args=(total,), width="stretch")
    n = st.slider("Events", 0, total, key=K.N, format="event %d")

    state = view.replay_state(events, n, info.config, info.higher_is_better)
    st.markdown(view.headline(state))
    c0, c1, c2, c3 = st.columns([1, 2, 2, 2], vertical_alignment="center")
    with c0:
        status_badge(state.status)
    c1.metric(f"Best {info.metric_title}", fmt_score(state.best))
    c2.metric("Scripts run", state.counts.run)
    c3.metric("Scripts failed", state.counts.failed)
    if state.pending:
        st.warning("At this point the run was waiting for a human to approve a plan.",
                   icon=":material/pending_actions:")
    timeline(state.timeline)
    if state.series.empty:
        st.caption("No solution scored yet at this point.")
    else:
        st.plotly_chart(best_score_chart(state.series, info, x_max=run_length), key="replay.chart")
    st.markdown("**Latest events at that point**")
    st.dataframe(state.log, hide_index=True, width="stretch",
                 column_config={"what": st.column_config.TextColumn(width="large")})


st.fragment(player, run_every="0.7s" if playing else None, key="replay.player")()
