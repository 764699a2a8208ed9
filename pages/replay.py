"""Replay: a placeholder until the real page lands."""

import streamlit as st

st.title("Replay")
st.info("Coming soon.")
