"""The rule registry: each rule is one unit (its file under
onlinel1/_kernels/rules/), and everything that lists rules reads the
registry (docs/algorithms.md, "One unit per rule")."""
from __future__ import annotations

import pathlib
import re

import pytest

from onlinel1 import Learner
from onlinel1._kernels.sgd import ORIGINS, RULES, STATE_COLUMNS
from onlinel1.cli import build_parser
from onlinel1.options import UPDATES, LearnerOptions
from onlinel1.regpath import RULES as PATH_RULES

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNELS = ROOT / "onlinel1" / "_kernels"


def slot_fields(kernel: str) -> list[str]:
    """Field names of ``cdef struct <kernel>_slot`` in the rule files."""
    for path in (KERNELS / "rules").glob("*.pxi"):
        m = re.search(rf"^cdef struct {kernel}_slot:\n((?:    .*\n)+)", path.read_text(), re.M)
        if m:
            return [line.split("#")[0].split()[1] for line in m.group(1).splitlines()
                    if line.split("#")[0].strip()]
    raise AssertionError(f"no struct {kernel}_slot in rules/*.pxi")


def test_everything_that_lists_rules_reads_the_registry():
    assert UPDATES == tuple(RULES) == PATH_RULES
    assert set(RULES) == {"plain", "subgradient", "cumulative", "fobos", "truncated",
                          "adagrad-fobos", "ftrl", "spred"}
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    update = next(a for a in train._actions if a.dest == "update")
    assert tuple(update.choices) == UPDATES
    for name, spec in RULES.items():
        assert f"{name}: {spec.title}" in update.help


def test_template_registry_lists_every_rule_file_once():
    text = (KERNELS / "sgd.pyx.tp").read_text()
    listed = re.findall(r'^\s+\("(\w+)", "(\w+)", \[([^\]]*)\]\),$', text, re.M)
    files = sorted(p.stem for p in (KERNELS / "rules").glob("*.pxi"))
    assert sorted(f for f, _, _ in listed) == files


@pytest.mark.parametrize("name", sorted(RULES))
def test_docs_have_a_section_per_rule(name):
    docs = (ROOT / "docs" / "algorithms.md").read_text()
    assert re.search(rf"^### {re.escape(name)}\b", docs, re.M), name


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("origin", ORIGINS)
def test_state_columns_are_the_slot_fields(name, origin):
    spec = RULES[name]
    kwargs = {"l1": 0.0} if name == "plain" else {}
    learner = Learner(update=name, origin=origin, **kwargs)
    kernel = spec.kernels[origin]
    assert learner._kernel.kernel == kernel
    assert STATE_COLUMNS[(name, origin)] == spec.state[origin]
    # The slot: the key's hash, the stored value, then the state columns.
    assert slot_fields(kernel) == ["key_hash", spec.weight_column, *spec.state[origin]]
    assert learner._kernel.store.n_aux == len(spec.state[origin])
    assert learner._kernel.store.slot_size == 8 * len(slot_fields(kernel))


def test_rule_validation_lives_with_the_rule():
    with pytest.raises(ValueError, match="l2 must be 0 with update='truncated'"):
        LearnerOptions(update="truncated", l2=0.1)
    with pytest.raises(ValueError, match="l1 must be 0 with update='plain'"):
        LearnerOptions(update="plain", l1=0.1)
    with pytest.raises(ValueError, match="l1 \\* eta0 must be < 1 with update='spred'"):
        LearnerOptions(update="spred", l1=2.0, eta0=0.5)
    with pytest.raises(ValueError, match="l2 \\* eta0 must be < 1 with update='cumulative'"):
        LearnerOptions(update="cumulative", l2=20.0, eta0=0.1)
    LearnerOptions(update="fobos", l2=20.0, eta0=0.1)       # FOBOS divides: no such limit
