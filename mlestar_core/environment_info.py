"""What the generated scripts can import: the ML packages installed for the interpreter that runs them.

Scripts run as `[python, script]` with the executor's interpreter (`LocalExecutor(python=sys.executable)`
by default), which need not be the app's own environment. So the versions are read by asking THAT
interpreter (a short subprocess printing its `importlib.metadata` distributions as JSON), never
from a hard-coded list. The answer is cached per interpreter path; any failure gives an empty
result and a logged warning, never an exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 20.0  # seconds for the interpreter to list its distributions

# The packages that matter to a tabular ML script, as (distribution name, import name), in the
# order they are reported. Anything else installed is not mentioned.
ML_PACKAGES: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("scipy", "scipy"),
    ("scikit-learn", "sklearn"),
    ("xgboost", "xgboost"),
    ("lightgbm", "lightgbm"),
    ("catboost", "catboost"),
    ("statsmodels", "statsmodels"),
    ("torch", "torch"),
    ("tensorflow", "tensorflow"),
    ("keras", "keras"),
    ("jax", "jax"),
    ("optuna", "optuna"),
    ("imbalanced-learn", "imblearn"),
    ("category-encoders", "category_encoders"),
    ("polars", "polars"),
    ("pyarrow", "pyarrow"),
    ("transformers", "transformers"),
    ("sentence-transformers", "sentence_transformers"),
    ("numba", "numba"),
)

# Run by the probed interpreter: every installed distribution's name and version, plus its Python.
_PROBE_CODE = """\
import importlib.metadata as md, json, sys
found = {}
for dist in md.distributions():
    try:
        name = dist.metadata["Name"]
        version = dist.version
    except Exception:
        continue
    if name and version and name not in found:
        found[name] = version
print(json.dumps({"python": sys.version.split()[0], "packages": found}))
"""


# Distributions that ship another package's module under a different name.
DISTRIBUTION_ALIASES: dict[str, str] = {"xgboost-cpu": "xgboost", "tensorflow-cpu": "tensorflow",
                                        "opencv-python-headless": "opencv-python"}


def canonical_name(name: str) -> str:
    """A distribution name in PEP 503 form: `Scikit_Learn` and `scikit.learn` become `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower().strip()


@dataclass(frozen=True)
class _Probe:
    python_version: str = ""  # "" when the interpreter could not be asked
    distributions: Mapping[str, str] = field(default_factory=dict)  # canonical name -> version
    ok: bool = False


_cache: dict[str, _Probe] = {}
_lock = threading.Lock()


def _resolve(python: str) -> str:
    # The executor resolves a path-like interpreter against our cwd, not the job's; so do we.
    return os.path.abspath(python) if os.sep in python else python


def _run_probe(python: str) -> _Probe:
    try:
        with tempfile.TemporaryDirectory(prefix="mlestar-envinfo-") as tmp:
            # A clean environment like the executor's (never a copy of os.environ): the same
            # packages are visible to the probe as to a script.
            env = {"PATH": os.environ.get("PATH") or os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
            proc = subprocess.run([python, "-c", _PROBE_CODE], cwd=tmp, env=env, capture_output=True,
                                  text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"exit code {proc.returncode}: {proc.stderr.strip()[-500:]}")
        lines = proc.stdout.strip().splitlines()
        data = json.loads(lines[-1] if lines else "")
        packages = data["packages"]
        if not isinstance(packages, dict):
            raise ValueError("the probe printed no package table")
        dists = {canonical_name(str(k)): str(v) for k, v in packages.items()}
        return _Probe(str(data.get("python", "")), dists, True)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError, RuntimeError) as e:
        log.warning("could not read the installed packages of %r: %s: %s", python, type(e).__name__, e)
        return _Probe()


def _probe(python: str) -> _Probe:
    key = _resolve(python)
    with _lock:  # one probe per interpreter, even when several brain threads ask at once
        if key not in _cache:
            _cache[key] = _run_probe(key)
        return _cache[key]


def clear_cache() -> None:
    """Forget every probed interpreter (the next call asks again, e.g. after a package install)."""
    with _lock:
        _cache.clear()


def installed_packages(python: str = sys.executable) -> dict[str, str]:
    """The ML packages (`ML_PACKAGES`) installed for `python`, name -> version, in report order.

    Asks that interpreter itself (cached per interpreter); an interpreter that cannot be asked
    gives an empty dict and a logged warning.
    """
    dists = _probe(python).distributions
    for alias, name in DISTRIBUTION_ALIASES.items():  # e.g. xgboost-cpu installs the xgboost module
        if alias in dists and name not in dists:
            dists = {**dists, name: dists[alias]}
    return {name: dists[name] for name, _module in ML_PACKAGES if name in dists}


def python_version(python: str = sys.executable) -> str:
    """The version of `python` ("3.11.7"), or "" if it could not be asked."""
    return _probe(python).python_version


def describe_environment(python: str = sys.executable, packages: Mapping[str, str] | None = None) -> str:
    """The scripts' environment for a prompt: Python version, installed ML packages with versions,
    and the ML packages that are not installed (and so must not be imported).

    `packages` overrides the probe (name -> version); by default `installed_packages(python)`.
    """
    probed = packages is None
    found = installed_packages(python) if probed else {canonical_name(k): v for k, v in packages.items()}
    if not found:
        if probed and not _probe(python).ok:
            return ("The installed packages could not be determined. Import only numpy, pandas and "
                    "scikit-learn, the usual minimum, and nothing you are unsure of.")
        return "No ML package was found in the scripts' environment: use the Python standard library only."
    modules = dict(ML_PACKAGES)
    shown = []
    for name, version in found.items():
        module = modules.get(name)
        shown.append(f"{name} {version}" + (f" (import {module})" if module and module != name else ""))
    text = ""
    version = python_version(python) if probed else ""
    if version:
        text = f"Python {version}. "
    text += "Installed: " + ", ".join(shown) + "."
    missing = [name for name, _module in ML_PACKAGES if name not in found]
    if missing:
        text += " Not installed (importing them fails): " + ", ".join(missing) + "."
    return text
