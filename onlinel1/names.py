"""Model names: what a daemon's named model may be called.

A name is 1-64 characters of ASCII letters, digits, ``_`` and ``-``, and
starts with a letter or a digit: it is used as a folder name under the
snapshot directory, so it can never be a path (no ``/``, no ``.``, no
``..``) nor look like a command-line flag.
"""
from __future__ import annotations

import re

#: The whole name must match (``fullmatch``).
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: The model a message without a ``model`` field goes to.
DEFAULT_MODEL = "default"


def check_model_name(name: object) -> str:
    """``name`` if it is a valid model name, else ``ValueError`` saying why."""
    if not isinstance(name, str):
        raise ValueError(f"a model name must be a string, got {type(name).__name__}")
    if not MODEL_NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} is not valid: 1-64 letters, digits, '_' or '-', "
                         f"starting with a letter or a digit")
    return name
