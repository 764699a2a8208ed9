"""Offline fixtures for the LLM brains: fake Gemini and OpenAI-compatible servers, a scripted expert."""

from .expert import ScriptedExpert
from .servers import (
    RETRIEVAL_SOURCES,
    ROLE_HEADINGS,
    Call,
    FakeGemini,
    FakeOpenAI,
    FakeServer,
    Fault,
    Headers,
    Reply,
    Responder,
    role_of,
    scripted,
    searched,
)

__all__ = [
    "RETRIEVAL_SOURCES",
    "ROLE_HEADINGS",
    "Call",
    "FakeGemini",
    "FakeOpenAI",
    "FakeServer",
    "Fault",
    "Headers",
    "Reply",
    "Responder",
    "ScriptedExpert",
    "role_of",
    "scripted",
    "searched",
]
