"""Every ```python snippet of README.md runs.

A snippet that talks to a daemon starts with the comment ``# needs a
daemon``: it runs against a real daemon on free loopback ports, its default
endpoints (tcp://127.0.0.1:5555 and :5556) replaced by that daemon's.  A
snippet that cannot run here is listed in ``SKIPPED`` under its section's
heading with the reason, and is skipped with that reason; nothing else is.
Each snippet runs in a fresh namespace, in a temporary directory (the files
it writes go there).
"""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
DAEMON_MARK = "# needs a daemon"
DEFAULT_ENDPOINTS = ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")

#: Snippets that do not run here, by the heading of their section: why.
SKIPPED = {
    "### Named models from the clients": (
        "an excerpt, not a program: it uses a `batch` built elsewhere, the default endpoints "
        "without naming them, and swaps in `ctr-v2.ol1`, a model file on the daemon's host; "
        "tests/test_models_client.py makes each of these calls against a real daemon"),
}


def snippets() -> list[tuple[int, str, str]]:
    """``(line, heading, code)`` of every ```python block of the README,
    ``line`` that of its first line of code, ``heading`` the section's."""
    found, heading, code, start = [], "", None, 0
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if code is None:
            if line.strip() == "```python":
                code, start = [], number + 1
            elif line.startswith("```"):
                code, start = False, number   # another language's block
            elif line.startswith("#"):
                heading = line.strip()
        elif code is False:
            if line.startswith("```"):
                code = None
        elif line.startswith("```"):
            found.append((start, heading, "\n".join(code) + "\n"))
            code = None
        else:
            code.append(line)
    return found


SNIPPETS = snippets()


def _id(snippet: tuple[int, str, str]) -> str:
    line, heading, _ = snippet
    return f"L{line}-" + re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def test_the_readme_has_the_snippets_and_every_skip_is_of_one():
    assert len(SNIPPETS) >= 5, "the README's python snippets were not found"
    headings = {heading for _, heading, _ in SNIPPETS}
    assert set(SKIPPED) <= headings, f"skips of no snippet: {set(SKIPPED) - headings}"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=_id)
def test_readme_snippet_runs(snippet, start_daemon, tmp_path, monkeypatch):
    line, heading, code = snippet
    if heading in SKIPPED:
        pytest.skip(f"README.md line {line} ({heading}): {SKIPPED[heading]}")
    talks = re.search(r"\b(Client|Producer)\(", code) is not None
    if code.startswith(DAEMON_MARK):
        assert any(e in code for e in DEFAULT_ENDPOINTS), \
            f"line {line}: a '{DAEMON_MARK}' snippet names no default endpoint to replace"
        daemon = start_daemon()
        code = code.replace(DEFAULT_ENDPOINTS[0], daemon.train)
        code = code.replace(DEFAULT_ENDPOINTS[1], daemon.request)
    else:
        assert not talks, f"line {line}: talks to a daemon: start it with '{DAEMON_MARK}'"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md, snippet at line {line}", "exec"), {"__name__": "__main__"})
