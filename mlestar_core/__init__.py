"""MLE-STAR Studio core: the MLE-STAR agent loop, headless (no Streamlit imports here)."""

from .config import RunConfig
from .model import Task, TaskError
from .store import Store

__all__ = ["RunConfig", "Store", "Task", "TaskError"]
