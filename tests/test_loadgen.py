"""benchmarks/loadgen.py, the soak's load generator: a short real run (a
daemon it starts, 2 producers, 1 prediction client, 1 misbehaving client)
writes the report's lines and accounts for every training frame; and the
accounting catches a frame or a seq that went missing.  No timing is
checked: the machine is shared."""
from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "benchmarks" / "loadgen.py"
DURATION, INTERVAL = 10, 2.5


def loadgen_module():
    spec = importlib.util.spec_from_file_location("loadgen", LOADGEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(the finished process, its JSON lines)."""
    out = tmp_path_factory.mktemp("loadgen") / "run.jsonl"
    # The garbage client, so that counted rejections are part of the account;
    # a long client timeout: a loaded machine must not fail the run.
    cmd = [sys.executable, str(LOADGEN), "--duration", str(DURATION), "--interval", str(INTERVAL),
           "--producers", "2", "--predictors", "1", "--rate", "50", "--misbehaving", "1",
           "--misbehaving-kinds", "garbage", "--misbehaving-rate", "40", "--data", "synthetic",
           "--key-space", "20000", "--batch-rows", "200", "--timeout", "60",
           "--drain-timeout", "120", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=ROOT)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, records


def test_run_completes_and_nothing_is_lost(run):
    proc, records = run
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["ok"] is True
    acc = summary["nothing_lost"]
    assert acc["ok"] is True
    frames, examples = acc["frames"], acc["examples"]
    assert frames["lost"] == 0 and frames["sent"] == frames["learned"] + frames["rejected"]
    # The garbage client sent training frames, and the daemon rejected them
    # all (and nothing of the producers').
    assert frames["garbage"] > 0 and frames["rejected"] == frames["garbage"]
    assert acc["producer_batches_rejected"] == 0
    assert frames["learned"] == frames["producers"] > 0
    assert examples["sent"] == examples["learned"] > 0 and examples["lost"] == 0
    # Each producer's last seq is the daemon's.
    assert len(acc["producers"]) == 2
    for seqs in acc["producers"].values():
        assert seqs["sent"] == seqs["learned"] > 0
    assert acc["seq_repeats"] == 0 and acc["undelivered"] == []
    # What the interval lines counted adds up to the producers' own totals.
    intervals = [r for r in records if r["type"] == "interval"]
    assert sum(r["train"]["examples_sent"] for r in intervals) == examples["sent"]
    assert sum(r["train"]["batches_sent"] for r in intervals) == frames["producers"]
    assert sum(r["misbehaving"]["garbage"].get("train_frames", 0)
               for r in intervals) == frames["garbage"]
    assert summary["well_behaved_failures"] == {}
    assert summary["daemon_exit"] == 0


def test_report_lines_have_their_fields(run):
    _, records = run
    start, intervals = records[0], records[1:-1]
    assert start["type"] == "start"
    assert {"date", "command", "commit", "machine", "data", "settings", "daemon"} <= set(start)
    assert start["daemon"]["attached"] is False and start["daemon"]["pid"] > 0
    assert [r["type"] for r in intervals] == ["interval"] * int(DURATION / INTERVAL)
    assert [r["i"] for r in intervals] == list(range(len(intervals)))
    for r in intervals:
        train, predict, daemon = r["train"], r["predict"], r["daemon"]
        assert {"examples_sent", "batches_sent", "examples_learned", "learned_per_s",
                "producer_timeouts"} <= set(train)
        assert {"requests", "ok", "per_s", "target_per_s", "p50_us", "p99_us", "p999_us",
                "max_us", "hist", "error_replies", "timeouts", "bad_replies"} <= set(predict)
        assert predict["target_per_s"] == 50
        assert predict["requests"] == (predict["ok"] + predict["timeouts"]
                                       + predict["bad_replies"]
                                       + sum(predict["error_replies"].values()))
        # Every latency recorded is in the histogram, and the percentiles are ordered.
        assert sum(c for _, c in predict["hist"]) == predict["ok"] + predict["bad_replies"]
        if predict["ok"]:
            assert 0 < predict["p50_us"] <= predict["p99_us"] <= predict["p999_us"] \
                <= predict["max_us"]
        # The sample at the end is one of the interval's samples.
        assert daemon["rss_samples"] >= 1 and daemon["rss_mib"] > 0
        assert daemon["rss_max_mib"] >= max(daemon["rss_mib"], daemon["rss_median_mib"])
        assert {"errors", "rejected", "requests", "store_features"} <= set(daemon)
        # The garbage client's requests were answered with errors, never a result.
        garbage = r["misbehaving"]["garbage"]
        assert garbage.get("requests", 0) > 0
        assert "reply:ok" not in garbage
    replies = sum(v for r in intervals for k, v in r["misbehaving"]["garbage"].items()
                  if k.startswith("reply:"))
    assert replies > 0


# ------------------------------------------------------ the account alone

def stats(batches, examples, rejected=None, producers=None, daemon_rejected=None, repeats=0):
    return {"batches": batches, "examples": examples, "rejected": rejected or {},
            "producers": producers or {}, "seq_repeats": repeats,
            "daemon": {"rejected": daemon_rejected or {}}}


PRODUCERS = [{"name": "a", "seq": 10, "examples_sent": 1000},
             {"name": "b", "seq": 5, "examples_sent": 500}]
GARBAGE = [{"train_frames": 4}]


def test_account_balances_learned_and_rejected_frames():
    account = loadgen_module().account
    before = stats(3, 300, {"bad_batch": 1}, {"old": 7})
    after = stats(18, 1800, {"bad_batch": 3, "malformed": 1}, {"old": 7, "a": 10, "b": 5},
                  daemon_rejected={"unknown_model": 1})
    acc = account(before, after, PRODUCERS, GARBAGE)
    assert acc["ok"] is True
    assert acc["frames"] == {"sent": 19, "producers": 15, "garbage": 4, "learned": 15,
                             "rejected": 4, "lost": 0}
    assert acc["rejected"] == {"bad_batch": 2, "malformed": 1, "unknown_model": 1}


@pytest.mark.parametrize("change, lost_frames", [
    ({"batches": 14, "examples": 1400}, 1),                          # a producer batch missing
    ({"rejected": {"bad_batch": 2}}, 1),                             # a garbage frame missing
    ({"producers": {"a": 9, "b": 5}}, 0),                            # a's last seq not learned
    ({"seq_repeats": 1}, 0),                                         # a batch learned twice
])
def test_account_catches_what_went_missing(change, lost_frames):
    account = loadgen_module().account
    before = stats(0, 0)
    after = dict(stats(15, 1500, {"bad_batch": 3}, {"a": 10, "b": 5},
                       daemon_rejected={"unknown_model": 1}), **change)
    acc = account(before, after, PRODUCERS, GARBAGE)
    assert acc["ok"] is False
    assert acc["frames"]["lost"] == lost_frames


def test_account_counts_a_numeric_rejection_once_and_flags_undelivered():
    account = loadgen_module().account
    # A producer batch that overflowed is both learned (batches, up to the
    # bad row) and rejected (numeric): accounted for once, as a rejection.
    after = stats(15, 1450, {"numeric": 1, "bad_batch": 3}, {"a": 10, "b": 5},
                  daemon_rejected={"unknown_model": 1})
    acc = account(stats(0, 0), after, PRODUCERS, GARBAGE)
    assert acc["frames"]["lost"] == 0 and acc["frames"]["learned"] == 14
    assert acc["producer_batches_rejected"] == 1 and acc["ok"] is True
    undelivered = [dict(PRODUCERS[0], undelivered=True), PRODUCERS[1]]
    assert account(stats(0, 0), after, undelivered, GARBAGE)["ok"] is False


def test_help_names_the_options():
    out = subprocess.run([sys.executable, str(LOADGEN), "--help"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0
    for flag in ("--duration", "--producers", "--predictors", "--rate", "--misbehaving",
                 "--out", "--attach"):
        assert flag in out.stdout
