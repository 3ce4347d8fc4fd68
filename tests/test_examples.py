"""The Python client examples (clients/python/examples) run to completion
against a real daemon and their output is checked: everything sent is
learned, in order (bit-identical to learning the same rows offline), the
progressive accuracy is sane, and the prediction service answers exactly
what ``Client.predict`` answers, with error lines instead of crashes.

Each example runs on small data written here, and also on the real data
sets of ../shared when they are present."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import random
import select
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import free_port, shared_path, wait_for
from onlinel1 import Learner
from onlinel1.client import Client, rows_to_batch

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "clients" / "python" / "examples"
RUN_TIMEOUT = 120.0


def load_example(name: str):
    """The example script as a module (the examples are not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_example(name: str, *args: str, stdin: str | None = None,
                timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=example_env(), cwd=EXAMPLES)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def sent_rows(stdout: str) -> int:
    first = stdout.splitlines()[0]
    assert first.startswith("sent ") and "rows/s" in first, stdout
    return int(first.split()[1])


def wait_examples(client: Client, n: int, timeout: float = 30.0) -> dict:
    """The daemon's stats once it has learned ``n`` examples (polled)."""
    return wait_for(client.stats, lambda s: s["examples"] >= n, timeout,
                    f"{n} examples learned", interval=0.02)


def snapshot_learner(client: Client, snapshot_dir: pathlib.Path):
    import onlinel1
    result = client.snapshot()
    return onlinel1.load(snapshot_dir / "default" / result["file"])


def assert_same_weights(daemon_learner, local: Learner) -> None:
    keys, weights = daemon_learner.weights()
    local_keys, local_weights = local.weights()
    assert keys.size > 0
    np.testing.assert_array_equal(keys, local_keys)
    np.testing.assert_array_equal(weights, local_weights)   # bit-identical


def test_examples_doctests_and_help():
    import doctest
    for name in ("criteo_producer", "text_producer", "prediction_service"):
        module = load_example(name)
        assert module.__doc__ and module.__doc__.strip(), name
        failed, attempted = doctest.testmod(module)
        assert failed == 0 and attempted > 0, name
        proc = run_example(name, "--help", timeout=30)
        assert "usage:" in proc.stdout


# ------------------------------------------------------------------ criteo

def write_criteo_like(path: pathlib.Path, n: int, seed: int = 0) -> None:
    """Criteo train.txt lines: label, 13 integer fields, 26 hex fields, some
    empty. The click rate depends on C1 (and a little on I1), so a linear
    model over field=value features can learn it."""
    rng = random.Random(seed)
    c1_rate = {f"{0xa0000000 + i:08x}": (0.85 if i % 2 else 0.08) for i in range(12)}
    with open(path, "w") as f:
        for _ in range(n):
            c1 = rng.choice(sorted(c1_rate))
            ints = [str(rng.choice([-1, 0, 1, 2, 5, 40, 1382])) if rng.random() > 0.2 else ""
                    for _ in range(13)]
            cats = [c1] + [f"{rng.getrandbits(32) % 50:08x}" if rng.random() > 0.1 else ""
                           for _ in range(25)]
            p = c1_rate[c1] + (0.05 if ints[0] == "1382" else 0.0)
            label = 1 if rng.random() < p else 0
            f.write("\t".join([str(label), *ints, *cats]) + "\n")


@pytest.fixture
def criteo_small(tmp_path):
    path = tmp_path / "clicks.tsv"
    write_criteo_like(path, 3000)
    return path


def check_criteo(start_daemon, tmp_path, data: pathlib.Path, min_accuracy: float) -> None:
    snapshots = tmp_path / "snapshots"
    daemon = start_daemon("--snapshot-dir", str(snapshots))
    n_lines = sum(1 for line in open(data) if line.strip())
    proc = run_example("criteo_producer", str(data), "--train-endpoint", daemon.train,
                       "--request-endpoint", daemon.request, "--batch-size", "700",
                       "--producer", "clicks")
    assert sent_rows(proc.stdout) == n_lines
    assert f"daemon: {n_lines} examples learned" in proc.stdout
    with Client(daemon.request, timeout=10) as client:
        stats = wait_examples(client, n_lines)
        assert stats["examples"] == n_lines
        assert stats["producers"] == {"clicks": math.ceil(n_lines / 700)}
        assert not stats["rejected"]
        assert min_accuracy < stats["progressive"]["accuracy"] <= 1
        assert stats["progressive"]["loss"] < math.log(2)     # better than knowing nothing
        # In order and complete: the model is the one learned offline from
        # the same rows, featurised by the example's own code.
        example = load_example("criteo_producer")
        rows = [{"features": f, "label": y}
                for f, y in example.rows(data, "\t", header=False, numeric=None)]
        local = Learner(**client.config()["learner"])
        local.learn(rows_to_batch(rows))
        assert_same_weights(snapshot_learner(client, snapshots), local)


def test_criteo_producer_small(start_daemon, tmp_path, criteo_small):
    check_criteo(start_daemon, tmp_path, criteo_small, min_accuracy=0.7)


def test_criteo_producer_shared(start_daemon, tmp_path):
    data = shared_path("ctr_criteo_8k/train.tsv")
    # 78.5 % of the rows are non-clicks; a progressive learner over 7,200 rows
    # lands a little below that rate.
    check_criteo(start_daemon, tmp_path, data, min_accuracy=0.7)


def test_criteo_producer_csv_with_header(start_daemon, tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("clicked,price,site\n1,3,a.com\n0,,b.com\n1,1000,a.com\n0,2,\n")
    daemon = start_daemon()
    proc = run_example("criteo_producer", str(data), "--header", "--numeric", "price",
                       "--train-endpoint", daemon.train, "--request-endpoint", daemon.request)
    assert sent_rows(proc.stdout) == 4
    example = load_example("criteo_producer")
    rows = list(example.rows(data, ",", header=True, numeric={"price"}))
    assert rows[0] == ({"price=b1": 1.0, "site=a.com": 1.0}, 1.0)
    assert rows[1] == ({"site=b.com": 1.0}, 0.0)
    assert rows[3] == ({"price=2": 1.0}, 0.0)
    with Client(daemon.request) as client:
        assert wait_examples(client, 4)["examples"] == 4


def test_producer_reports_a_daemon_that_is_not_there(tmp_path, criteo_small):
    # Nothing listens: the Producer's connect check says so (within its
    # connect_timeout, 5 s), before a batch is queued.
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "criteo_producer.py"), str(criteo_small),
         "--train-endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5",
         "--batch-size", "10"],
        capture_output=True, text=True, timeout=60, env=example_env())
    assert proc.returncode == 1
    assert "criteo_producer: no daemon answered at " in proc.stderr
    assert "nothing accepted the connection" in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout


# -------------------------------------------------------------------- text

SPAM_WORDS = "free prize win cash call now claim urgent txt offer winner mobile".split()
HAM_WORDS = "ok see you later home dinner love tonight sorry going lunch meeting".split()


def write_sms_like(path: pathlib.Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    common = "the a to and is i u for my in".split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            spam = rng.random() < 0.2
            words = rng.sample(SPAM_WORDS if spam else HAM_WORDS, 3) + rng.sample(common, 3)
            rng.shuffle(words)
            text = " ".join(words).capitalize() + rng.choice([".", "!", "..."])
            f.write(f"{'spam' if spam else 'ham'}\t{text}\n")


def check_text(start_daemon, tmp_path, data: pathlib.Path, min_accuracy: float) -> None:
    snapshots = tmp_path / "snapshots"
    daemon = start_daemon("--snapshot-dir", str(snapshots))
    n_lines = sum(1 for line in open(data, encoding="utf-8", errors="replace") if line.strip())
    proc = run_example("text_producer", str(data), "--train-endpoint", daemon.train,
                       "--request-endpoint", daemon.request, "--ngrams", "2")
    assert sent_rows(proc.stdout) == n_lines
    example = load_example("text_producer")
    with Client(daemon.request, timeout=10) as client:
        stats = wait_examples(client, n_lines)
        assert stats["examples"] == n_lines and not stats["rejected"]
        assert stats["producers"] == {"text-producer": math.ceil(n_lines / 500)}
        assert min_accuracy < stats["progressive"]["accuracy"] <= 1
        # The client hashed the tokens; sent row-wise, the daemon hashes the
        # same names to the same keys: a spammy text scores above a hammy one.
        spam, ham = client.predict([example.row("Claim your FREE cash prize, call now!", 2),
                                    example.row("Sorry, see you at home for dinner", 2)]
                                   )["predictions"]
        assert spam > 0.5 > ham
        # Complete and in order.
        rows = [{"namespaces": {"w": example.tokenize(text, 2)}, "label": y}
                for text, y in example.examples(data, "spam")]
        local = Learner(**client.config()["learner"])
        local.learn(rows_to_batch(rows))
        assert_same_weights(snapshot_learner(client, snapshots), local)


def test_text_producer_small(start_daemon, tmp_path):
    data = tmp_path / "sms.tsv"
    write_sms_like(data, 2000)
    check_text(start_daemon, tmp_path, data, min_accuracy=0.95)


def test_text_producer_shared(start_daemon, tmp_path):
    data = shared_path("sms_spam/SMSSpamCollection")
    # 86.6 % ham: the progressive accuracy must clearly beat always saying "ham".
    check_text(start_daemon, tmp_path, data, min_accuracy=0.95)


# ------------------------------------------------------ prediction service

def trained_daemon(start_daemon, tmp_path):
    """A daemon that has learned the small SMS-like set (acknowledged)."""
    data = tmp_path / "sms.tsv"
    write_sms_like(data, 1000)
    daemon = start_daemon()
    example = load_example("text_producer")
    rows = [{"namespaces": {"w": example.tokenize(text)}, "label": y}
            for text, y in example.examples(data, "spam")]
    with Client(daemon.request, timeout=10) as client:
        client.learn(rows)
    return daemon, example


def service_rows(example, n: int) -> list[dict]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        words = rng.sample(SPAM_WORDS + HAM_WORDS, 4)
        row = example.row(" ".join(words))
        if i % 3 == 0:
            row["features"] = {"17": 1.0, "len": float(i % 7)}
        out.append(row)
    return out


@pytest.mark.parametrize("top_k", [0, 3])
def test_prediction_service_equals_client_predict(start_daemon, tmp_path, top_k):
    daemon, example = trained_daemon(start_daemon, tmp_path)
    rows = service_rows(example, 600)
    lines = [json.dumps({"id": i, **row}) for i, row in enumerate(rows)]
    proc = run_example("prediction_service", "--connect", daemon.request, "--top-k", str(top_k),
                       "--batch-size", "64", stdin="\n".join(lines) + "\n")
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == list(range(len(rows)))
    with Client(daemon.request) as client:
        expected = client.predict(rows, top_k=top_k)
    assert [a["prediction"] for a in answers] == expected["predictions"]    # exactly
    if top_k:
        assert [a["contributions"] for a in answers] == expected["contributions"]
    else:
        assert all("contributions" not in a for a in answers)


def test_prediction_service_error_lines(start_daemon, tmp_path):
    daemon, example = trained_daemon(start_daemon, tmp_path)
    good = example.row("free prize call now")
    lines = [
        json.dumps({"id": "a", **good}),
        "this is not json",
        json.dumps([1, 2]),
        '{"id": "nan", "features": {"x": NaN}}',            # the daemon refuses it
        json.dumps({"id": "neg", "features": {"x": 1}, "namespaces": 3}),   # refused here
        json.dumps({"id": "b", "label": 1, "tag": "t", **good}),
        "",
    ]
    proc = run_example("prediction_service", "--connect", daemon.request,
                       stdin="\n".join(lines) + "\n")
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(answers) == 6
    with Client(daemon.request) as client:
        p = client.predict([good])["predictions"][0]
    assert answers[0] == {"id": "a", "prediction": p}
    assert answers[1]["error"]["code"] == "bad_json"
    assert answers[2]["error"]["code"] == "bad_json"
    assert answers[3]["id"] == "nan" and answers[3]["error"]["code"] == "bad_batch"
    assert answers[4]["id"] == "neg" and answers[4]["error"]["code"] == "bad_row"
    assert answers[5] == {"id": "b", "prediction": p}     # its neighbour's error did not spread


def test_prediction_service_daemon_down_gives_timeout_lines():
    lines = [json.dumps({"id": i, "features": {"a": 1}}) for i in range(3)]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "prediction_service.py"),
         "--connect", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.3"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
        env=example_env())
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert all(a["error"]["code"] == "timeout" for a in answers)
    assert time.monotonic() - start < 30


def test_prediction_service_answers_each_line_without_waiting_for_more(start_daemon, tmp_path):
    """Interactive use: a line is answered while stdin stays open."""
    daemon, example = trained_daemon(start_daemon, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "prediction_service.py"), "--connect", daemon.request],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=example_env(), bufsize=1)
    try:
        with Client(daemon.request) as client:
            for i, text in enumerate(["free cash now", "see you at home"]):
                row = example.row(text)
                proc.stdin.write(json.dumps({"id": i, **row}) + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], 30)
                assert ready, "no answer within 30 s while stdin is still open"
                answer = json.loads(proc.stdout.readline())
                assert answer == {"id": i, "prediction": client.predict([row])["predictions"][0]}
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
