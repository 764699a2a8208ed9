"""Ablation: a placeholder until the real page lands."""

import streamlit as st

st.title("Ablation")
st.info("Coming soon.")
