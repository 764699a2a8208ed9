"""Retrieved models: a placeholder until the real page lands."""

import streamlit as st

st.title("Retrieved models")
st.info("Coming soon.")
