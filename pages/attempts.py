"""Refinement: a placeholder until the real page lands."""

import streamlit as st

st.title("Refinement")
st.info("Coming soon.")
