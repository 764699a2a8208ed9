"""Run dashboard: a placeholder until the real page lands."""

import streamlit as st

st.title("Run dashboard")
st.info("Coming soon.")
