"""API keys: where they come from, and keeping them out of everything that is persisted.

A key lives in memory only. It is looked up when a brain is built (explicit value from the
UI, then the environment, then `.streamlit/secrets.toml`), handed to the HTTP client, and
scrubbed from any text the brain reports (answers, errors) before the store sees it. The
executor's allow-listed environment keeps it away from generated scripts.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ...hardening import register_secret

SECRETS_FILE = Path(__file__).resolve().parents[3] / ".streamlit" / "secrets.toml"

KEY_NAMES: dict[str, tuple[str, ...]] = {
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "openai": ("OPENAI_API_KEY",),
}


class MissingKey(ValueError):
    """No API key could be found for a brain that needs one."""


def _from_secrets_file(names: tuple[str, ...], path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _lookup(brain: str, explicit: str | None, secrets_file: Path | None) -> tuple[str | None, str]:
    """(key, where it comes from): explicit, else environment, else .streamlit/secrets.toml."""
    if explicit and explicit.strip():
        return explicit.strip(), "entered on this page (kept in memory only)"
    names = KEY_NAMES.get(brain, ())
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value, f"environment variable {name}"
    value = _from_secrets_file(names, secrets_file or SECRETS_FILE)
    return (value, ".streamlit/secrets.toml") if value else (None, "none found")


def find_key(brain: str, explicit: str | None = None, *, secrets_file: Path | None = None) -> str | None:
    """The key for `brain`: explicit, else environment, else .streamlit/secrets.toml, else None. A key found
    is registered as a secret: scripts' output and stored errors are scrubbed of it wherever it came from."""
    key = _lookup(brain, explicit, secrets_file)[0]
    register_secret(key)
    return key


def key_source(brain: str, explicit: str | None = None, *, secrets_file: Path | None = None) -> str:
    """Where the key would come from, for the UI (never the key itself)."""
    return _lookup(brain, explicit, secrets_file)[1]


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
