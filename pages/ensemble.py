"""Ensemble: a placeholder until the real page lands."""

import streamlit as st

st.title("Ensemble")
st.info("Coming soon.")
