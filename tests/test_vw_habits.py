"""Habits people bring from Vowpal Wabbit (issue 16): ``-q ab`` interactions,
``|user 42 |ad 42`` as two features (``--namespaced-integers``), ``--loss
logistic``, and what ``--l1`` means for each rule (ftrl's is a total).

The crossing is checked against an eager reference written here in plain
Python (itertools over the groups, keys from the reference ``xxhash``
package), on random VW lines and on VW's own test set 0002; a file with
``-q`` must train exactly like the file with the crossed features written
out."""
from __future__ import annotations

import io
import itertools
import random
import struct

import msgpack
import numpy as np
import pytest
import xxhash

from onlinel1 import Batch, Learner, LearnerOptions, model_file
from onlinel1.cli import main
from onlinel1.errors import OptionError
from onlinel1.io import ParseError, feature_key, feature_keys, read_batches
from onlinel1.io.hashing import HASH_SEED, namespace_hash
from onlinel1.io.interactions import (CROSS_SEED, MAX_CROSSED_PER_ROW, InteractionLimitError,
                                      cross_arrays, cross_batch, cross_keys, namespace_id,
                                      namespace_ids)
from onlinel1.options import PENALTY_SCOPE, RULES, UPDATES, penalty_help

from conftest import SAMPLES

VW0002 = SAMPLES / "vw0002_head60.vw"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def collect(source, **kwargs) -> Batch:
    batches = list(read_batches(source, "vw", **kwargs))
    sizes = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate([[0]] + [b.indptr[1:] + s for b, s in zip(batches, sizes)])
    return Batch(indptr, np.concatenate([b.keys for b in batches]),
                 np.concatenate([b.values for b in batches]),
                 np.concatenate([b.labels for b in batches]),
                 np.concatenate([b.weights for b in batches]))


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


# ------------------------------------------------------ the eager reference

def ref_cross_keys(a: int, b: int) -> int:
    """The documented crossed key: XXH64 of le64(a) || le64(b), CROSS_SEED."""
    return xxhash.xxh64_intdigest(struct.pack("<QQ", a, b), seed=CROSS_SEED)


def ref_key(name: str, namespace: str | None, namespaced: bool) -> int:
    """docs/formats.md: integer names are keys (plus the namespace's hash
    with namespaced integers), other names XXH64 of namespace^name."""
    text = name if not namespace else f"{namespace}^{name}"
    if name.isascii() and name.isdigit() and int(name) < 2**64:
        offset = 0
        if namespaced and namespace:
            offset = xxhash.xxh64_intdigest(f"{namespace}^".encode(), seed=HASH_SEED)
        return (int(name) + offset) % 2**64
    return xxhash.xxh64_intdigest(text.encode(), seed=HASH_SEED)


def ref_interactions(terms) -> list[str]:
    out = []
    for term in terms:
        term = "".join(sorted(term))
        if term not in out:
            out.append(term)
    return out


def ref_crossed(features, terms) -> list[tuple[int, float]]:
    """The crossed features of one example, eagerly: ``features`` is a list
    of (key, value, namespace character as an int)."""
    groups: dict[int, list[tuple[int, float]]] = {}
    for key, value, char in features:
        groups.setdefault(char, []).append((key, value))
    present = sorted(groups)
    terms = ref_interactions(terms)
    wildcard = any(":" in t for t in terms)
    done: set[tuple[int, ...]] = set()
    concrete: list[tuple[int, ...]] = []
    for term in terms:
        chars = [ord(c) for c in term]
        if ":" in term:
            if term == "::":
                pairs = [(a, b) for i, a in enumerate(present) for b in present[i:]]
            else:
                fixed = next(c for c in chars if c != ord(":"))
                pairs = [tuple(sorted((c, fixed))) for c in present] if fixed in groups else []
        elif all(c in groups for c in chars):
            pairs = [tuple(chars)]
        else:
            pairs = []
        for pair in pairs:
            if wildcard and len(pair) == 2:
                if pair in done:
                    continue
                done.add(pair)
            concrete.append(pair)
    out = []
    for tup in concrete:
        lists = [groups[c] for c in tup]
        for idx in itertools.product(*[range(len(items)) for items in lists]):
            # A repeated group: combinations with repetition (j >= i).
            if any(tup[p] == tup[p - 1] and idx[p] < idx[p - 1] for p in range(1, len(tup))):
                continue
            key, value = lists[0][idx[0]]
            for p in range(1, len(tup)):
                k, v = lists[p][idx[p]]
                key, value = ref_cross_keys(key, k), value * v
            out.append((key, value))
    return out


def char_of(namespace: str | None) -> int:
    return ord(" ") if not namespace else namespace.encode("utf-8")[0]


# ------------------------------------------------------------ random VW data

NAMESPACES = [None, "a", "alpha", "b", "beta", "c", "1x", "\u00fcber"]
NAMES = ["x", "y2", "42", "007", "z", "hello", "7"]


def random_rows(seed: int, n: int):
    """``n`` examples: (label, [(namespace, scale, [(name, value or None)])])."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        groups = []
        for _ in range(rng.randint(0, 5)):
            ns = rng.choice(NAMESPACES)
            scale = rng.choice([1.0, 1.0, 0.5, -2.0]) if ns else 1.0
            items = [(rng.choice(NAMES), rng.choice([None, round(rng.uniform(-3, 3), 3)]))
                     for _ in range(rng.randint(0, 4))]
            groups.append((ns, scale, items))
        rows.append((rng.choice([-1, 1]), groups))
    return rows


def vw_text(rows) -> bytes:
    lines = []
    for label, groups in rows:
        parts = [str(label)]
        for ns, scale, items in groups:
            head = "|" + (ns or "") + (f":{scale!r}" if ns and scale != 1.0 else "")
            feats = [name if value is None else f"{name}:{value!r}" for name, value in items]
            parts.append(" ".join([head] + feats))
        if len(parts) == 1:
            parts.append("|")
        lines.append(" ".join(parts))
    return ("\n".join(lines) + "\n").encode("utf-8")


def ref_row(groups, terms, namespaced: bool):
    """(features, namespace ids) of one example: its own, then the crossed."""
    own = []
    for ns, scale, items in groups:
        for name, value in items:
            v = 1.0 if value is None else value
            own.append((ref_key(name, ns, namespaced), v if scale == 1.0 else v * scale,
                        char_of(ns)))
    crossed = ref_crossed(own, terms) if terms else []
    return [(k, v) for k, v, _ in own] + crossed, [c for _, _, c in own]


TERM_SETS = [["ab"], ["ba", "ab"], ["aa"], ["abc"], ["aab"], ["aaa"], [" a", "ac"],
             ["::"], [":a"], ["ab", "::"], ["1a", ":b", "ab"], ["ab", "bc", "abc", "aabb"]]


@pytest.mark.parametrize("namespaced", [False, True], ids=["plain-integers", "namespaced"])
@pytest.mark.parametrize("terms", TERM_SETS, ids=["|".join(t) for t in TERM_SETS])
def test_the_reader_crosses_as_the_eager_reference(terms, namespaced):
    """Finding: -q ab is missing.  Every key and value bit for bit, batch
    and block boundaries anywhere."""
    rows = random_rows(hash(tuple(terms)) % 1000 + 7 * namespaced, 120)
    data = vw_text(rows)
    expected = [ref_row(groups, terms, namespaced)[0] for _, groups in rows]
    for batch_size, block_size in ((8192, 1 << 20), (3, 17)):
        batch = collect(io.BytesIO(data), interactions=terms, namespaced_integers=namespaced,
                        batch_size=batch_size, block_size=block_size)
        assert batch.n_rows == len(rows)
        for r, want in enumerate(expected):
            row = slice(batch.indptr[r], batch.indptr[r + 1])
            assert batch.keys[row].tolist() == [k for k, _ in want], (r, rows[r])
            np.testing.assert_array_equal(bits(batch.values[row]), bits([v for _, v in want]))


@pytest.mark.parametrize("terms", TERM_SETS, ids=["|".join(t) for t in TERM_SETS])
def test_cross_arrays_of_a_batch_with_namespace_ids_equals_the_reader(terms):
    """The function the daemon's row decoding calls gives what the reader gives."""
    rows = random_rows(99, 80)
    data = vw_text(rows)
    plain = collect(io.BytesIO(data))
    ids = np.array([c for _, groups in rows for c in ref_row(groups, (), False)[1]],
                   dtype=np.uint8)
    crossed = cross_batch(plain, ids, terms)
    reader = collect(io.BytesIO(data), interactions=terms)
    np.testing.assert_array_equal(crossed.indptr, reader.indptr)
    np.testing.assert_array_equal(crossed.keys, reader.keys)
    np.testing.assert_array_equal(bits(crossed.values), bits(reader.values))
    np.testing.assert_array_equal(crossed.labels, reader.labels)
    assert namespace_ids([None, "", "alpha", "\u00fcber"]).tolist() == [32, 32, 97, 0xC3]
    assert namespace_id(b"b") == 98


def test_cross_keys_is_the_documented_xxh64_of_both_keys():
    rng = random.Random(5)
    for _ in range(200):
        a, b = rng.getrandbits(64), rng.getrandbits(64)
        assert cross_keys(a, b) == ref_cross_keys(a, b)
    assert cross_keys(0, 7) != 7 and cross_keys(1, 2) != cross_keys(2, 1)
    assert CROSS_SEED == int.from_bytes(b"ol1cross", "big")


def parse_0002_line(line: str):
    """One line of VW's test set 0002: 'label importance tag|T name |f name:value ...'."""
    head, *groups = line.split("|")
    out = []
    for group in groups:
        ns, *feats = group.split()
        out.append((ns, 1.0, [(f.split(":")[0], float(f.split(":")[1]) if ":" in f else None)
                              for f in feats]))
    return float(head.split()[0]), out


@pytest.mark.parametrize("terms", [["Tf"], ["ff"], ["::"], ["TTf"]])
def test_vw_test_set_0002_with_interactions(terms):
    """Real data: the ticker namespace T crossed with the features f."""
    lines = VW0002.read_text().splitlines()
    batch = collect(VW0002, interactions=terms)
    assert batch.n_rows == len(lines)
    for r, line in enumerate(lines):
        _, groups = parse_0002_line(line)
        want, _ = ref_row(groups, terms, False)
        row = slice(batch.indptr[r], batch.indptr[r + 1])
        assert batch.keys[row].tolist() == [k for k, _ in want]
        np.testing.assert_array_equal(bits(batch.values[row]), bits([v for _, v in want]))
    # |T has one feature and |f thirteen: Tf adds 13, ff 13*14/2 = 91.
    if terms == ["Tf"]:
        assert (np.diff(batch.indptr) == 14 + 13).all()
    if terms == ["ff"]:
        assert (np.diff(batch.indptr) == 14 + 91).all()


def test_a_file_with_q_trains_like_the_file_with_the_crossed_features_written_out(
        capsys, tmp_path):
    """train -q, save, predict: the same weights and predictions, bit for
    bit, as the file whose crossed features are explicit integer features."""
    rows = random_rows(3, 300)
    terms = ["ab", "bc", "aa"]
    implicit, explicit = tmp_path / "q.vw", tmp_path / "explicit.vw"
    implicit.write_bytes(vw_text(rows))
    lines = vw_text(rows).decode().splitlines()
    with explicit.open("w") as f:
        for line, (_, groups) in zip(lines, rows):
            own, _ = ref_row(groups, (), False)
            crossed = ref_row(groups, terms, False)[0][len(own):]
            f.write(line + (" | " + " ".join(f"{k}:{v!r}" for k, v in crossed)
                            if crossed else "") + "\n")
    flags = ["--update", "fobos", "--l1", "1e-4", "--eta0", "0.3", "--quiet"]
    for name, data, extra in (("q", implicit, ["-q", "ba", "-q", "bc", "--quadratic", "aa"]),
                              ("x", explicit, [])):
        code, _, err = run(capsys, "train", data, *flags, *extra, "--save", tmp_path / f"{name}.ol1")
        assert code == 0, err
    q, _, _ = model_file.load(tmp_path / "q.ol1")
    x, _, _ = model_file.load(tmp_path / "x.ol1")
    assert q.options.interactions == ("ab", "bc", "aa") and x.options.interactions == ()
    for a, b in zip(q.weights(), x.weights()):
        np.testing.assert_array_equal(a, b)
    assert q.weights()[0].size > 50
    code, out_q, err = run(capsys, "predict", "--model", tmp_path / "q.ol1", implicit)
    assert code == 0, err
    code, out_x, err = run(capsys, "predict", "--model", tmp_path / "x.ol1", explicit)
    assert code == 0, err
    assert out_q == out_x and len(out_q.splitlines()) == len(rows)
    code, out, _ = run(capsys, "inspect", tmp_path / "q.ol1")
    assert "interactions=ab,bc,aa" in out


def test_interactions_in_model_files_and_old_files(tmp_path):
    """The setting is in the model's options only when on: a model without
    it writes the header it always wrote, and files written before load."""
    plain = Learner(update="fobos", l1=1e-3)
    path = tmp_path / "plain.ol1"
    model_file.save(path, plain)
    options = model_file.read_header(path)["options"]
    assert "interactions" not in options and "namespaced_integers" not in options
    crossed = Learner(update="fobos", l1=1e-3, interactions=["ba", ":a"],
                      namespaced_integers=True)
    model_file.save(path, crossed)
    options = model_file.read_header(path)["options"]
    assert options["interactions"] == ["ab", ":a"] and options["namespaced_integers"] is True
    loaded, _, _ = model_file.load(path)
    assert loaded.options.interactions == ("ab", ":a") and loaded.options.namespaced_integers
    for old in ("v1_a9a_fobos.ol1", "v1_vw0002_cumulative.ol1"):
        learner, _, _ = model_file.load(SAMPLES / old)
        assert learner.options.interactions == () and not learner.options.namespaced_integers
    # A reader that predates the setting refuses such a file by name (as the
    # budget's options are refused), never loads it without its interactions.
    assert set(options) - set(LearnerOptions().to_state_dict()) == {"interactions",
                                                                     "namespaced_integers"}


def test_warm_start_keeps_the_models_interactions(capsys, tmp_path):
    rows = random_rows(11, 100)
    data = tmp_path / "d.vw"
    data.write_bytes(vw_text(rows))
    code, _, err = run(capsys, "train", data, "-q", "ab", "--quiet", "--save", tmp_path / "a.ol1")
    assert code == 0, err
    code, _, err = run(capsys, "train", data, "--initial", tmp_path / "a.ol1", "--quiet",
                       "--save", tmp_path / "b.ol1")
    assert code == 0, err
    assert model_file.load(tmp_path / "b.ol1")[0].options.interactions == ("ab",)
    code, _, err = run(capsys, "train", data, "--initial", tmp_path / "a.ol1", "-q", "ac",
                       "--quiet")
    assert code == 1 and "interactions" in err


@pytest.mark.parametrize("bad, why", [
    ("ab", "must be a list"), (["a"], "2 to 8"), (["abcdefghi"], "2 to 8"),
    (["a|"], "cannot start a namespace"), (["a\u00fc"], "cannot start a namespace"),
    ([":ab"], "wildcard"), ([3], "must be strings")])
def test_bad_interactions_are_refused_by_name(bad, why):
    with pytest.raises(OptionError, match=why) as info:
        LearnerOptions(interactions=bad)
    assert info.value.option == "interactions"


def test_interactions_need_namespaces_and_flags_check_their_length(capsys, tmp_path):
    code, _, err = run(capsys, "train", SAMPLES / "a9a_head2000.svm", "-q", "ab", "--quiet")
    assert code == 1 and "interactions cross namespaces" in err
    with pytest.raises(ValueError, match="interactions cross namespaces"):
        read_batches(SAMPLES / "a9a_head2000.svm", "svmlight", interactions=["ab"])
    for flags in (["-q", "abc"], ["--cubic", "ab"], ["--interactions", "a"]):
        with pytest.raises(SystemExit) as info:
            main(["train", str(VW0002), *flags])
        assert info.value.code == 2
    capsys.readouterr()


def test_a_row_crossing_too_many_features_is_refused_not_allocated():
    wide = " ".join(f"f{i}" for i in range(2100))
    data = f"1 |a ok\n1 |a {wide} |b {wide}\n".encode()
    batches = read_batches(io.BytesIO(data), "vw", interactions=["ab"])
    first = next(batches)
    assert first.n_rows == 1                     # the row before the bad line comes first
    with pytest.raises(ParseError, match=f"more than {MAX_CROSSED_PER_ROW:,} features") as info:
        next(batches)
    assert info.value.line == 2
    keys = np.arange(10, dtype=np.uint64)
    ids = np.frombuffer(b"aaaaabbbbb", dtype=np.uint8)
    with pytest.raises(InteractionLimitError) as limit:
        cross_arrays([0, 10], keys, np.ones(10), ids, ["ab"], max_row=24)
    assert (limit.value.row, limit.value.count, limit.value.limit) == (0, 25, 24)
    with pytest.raises(InteractionLimitError) as limit:
        cross_arrays([0, 5, 10], keys, np.ones(10), ids, ["::"], max_nnz=20)
    assert limit.value.row is None and limit.value.limit == 20
    indptr, out, _ = cross_arrays([0, 5, 10], keys, np.ones(10), ids, ["::"], max_nnz=40)
    assert indptr.tolist() == [0, 20, 40] and out.size == 40


# ------------------------------------------------------- namespaced integers

def test_user_42_and_ad_42_are_one_key_by_default_and_two_when_namespaced(capsys, tmp_path):
    """Finding: integer feature names ignore their namespace."""
    line = b"1 |user 42 |ad 42 | 42\n"
    default = next(read_batches(io.BytesIO(line), "vw"))
    assert default.keys.tolist() == [42, 42, 42]          # backward compatible
    names: dict[int, str] = {}
    namespaced = next(read_batches(io.BytesIO(line), "vw", names=names,
                                   namespaced_integers=True))
    user, ad = (42 + namespace_hash("user")) % 2**64, (42 + namespace_hash("ad")) % 2**64
    assert namespaced.keys.tolist() == [user, ad, 42]
    assert user == feature_key("42", "user", namespaced_integers=True) == ref_key("42", "user", True)
    assert feature_keys(["42", "x", "007"], "ad", namespaced_integers=True).tolist() == [
        ad, feature_key("x", "ad"), (7 + namespace_hash("ad")) % 2**64]
    assert names == {user: "user^42", ad: "ad^42"}
    # Stored in the model, so predict reads the file the same way.
    data = tmp_path / "ids.vw"
    data.write_bytes(b"1 |user 42 |ad 7\n-1 |user 7 |ad 42\n" * 20)
    code, _, err = run(capsys, "train", data, "--namespaced-integers", "--quiet",
                       "--save", tmp_path / "n.ol1")
    assert code == 0, err
    learner, saved_names, _ = model_file.load(tmp_path / "n.ol1")
    assert learner.options.namespaced_integers and learner.nnz == 4
    assert saved_names[user] == "user^42"
    code, out, err = run(capsys, "predict", "--model", tmp_path / "n.ol1", data)
    assert code == 0, err
    batch = next(read_batches(data, "vw", namespaced_integers=True))
    assert out.split() == [repr(p) for p in learner.predict(batch).tolist()]
    code, _, err = run(capsys, "train", data, "--quiet", "--save", tmp_path / "d.ol1")
    assert model_file.load(tmp_path / "d.ol1")[0].nnz == 2  # keys 42 and 7 only


# ---------------------------------------------------------- loss logistic

def test_loss_logistic_is_log_everywhere(capsys, tmp_path, start_daemon):
    """Finding: --loss logistic is refused."""
    assert Learner(loss="logistic").options.loss == "log"
    assert LearnerOptions.from_dict({"loss": "logistic"}) == LearnerOptions(loss="log")
    code, _, err = run(capsys, "train", VW0002, "--loss", "logistic", "--quiet",
                       "--save", tmp_path / "l.ol1")
    assert code == 1 and "is not -1/+1" in err             # a logistic loss, refusing 0.52
    data = tmp_path / "bin.vw"
    data.write_text("1 |a x\n-1 |a y\n" * 10)
    code, _, err = run(capsys, "train", data, "--loss", "logistic", "--quiet",
                       "--save", tmp_path / "l.ol1")
    assert code == 0, err
    assert model_file.read_header(tmp_path / "l.ol1")["options"]["loss"] == "log"
    with pytest.raises(OptionError,
                       match="'log', 'squared', 'hinge', 'poisson', 'quantile', 'logistic'"):
        LearnerOptions(loss="cauchy")
    # The daemon: a flag of serve, a config file's [learner] table, create.
    config = tmp_path / "d.toml"
    config.write_text('[learner]\nloss = "logistic"\n')
    daemon = start_daemon("--config", str(config), "-q", "ab")
    reply = daemon.request_once({"v": 1, "op": "create", "model": "m",
                                 "learner": {"loss": "logistic", "interactions": ["ba"]}},
                                timeout=30)
    assert reply["ok"], reply
    assert reply["result"]["learner"]["loss"] == "log"
    assert reply["result"]["learner"]["interactions"] == ["ab"]
    stats = daemon.request_once({"v": 1, "op": "stats"}, timeout=30)
    assert stats["ok"], stats
    assert "logistic" not in msgpack.packb(stats).decode("latin-1")


# ------------------------------------------------------------- what l1 is

def test_every_rule_says_what_its_l1_and_l2_are():
    """Finding: ftrl's --l1 is a total, and the help said per example for all."""
    assert set(PENALTY_SCOPE) == set(RULES) == set(UPDATES)
    for rule, scopes in PENALTY_SCOPE.items():
        for name, scope in scopes.items():
            refused = False
            try:
                LearnerOptions(update=rule, **{"l1": 0.0, name: 1e-3})
            except OptionError as exc:
                refused = exc.reason == "conflict"
            assert refused == (scope is None), (rule, name)
    assert PENALTY_SCOPE["ftrl"] == {"l1": "total", "l2": "total"}
    text = penalty_help("l1")
    assert "per example" in text and "total over the whole stream" in text
    assert text.index("total") < text.index("for ftrl") and text.count("ftrl") >= 1


def test_the_help_of_l1_names_ftrl_as_a_total(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    l1 = out[out.index("--l1 X L1 penalty"):out.index("--l2 X L2 penalty")]
    assert "per example" in l1 and "a total over the whole stream" in l1
    assert "for ftrl" in l1 and "ftrl" not in l1[:l1.index("total")]
    assert "-q AB, --quadratic AB" in out and "--namespaced-integers" in out


def test_ftrl_l1_is_a_total_and_fobos_l1_per_example():
    """The same stream, l1 = 1: FOBOS never lets the weight off 0 (each
    example's |g| < 1 <= l1), FTRL does once the gradients sum past 1."""
    batch = Batch([0, 1], [5], [1.0], [1])
    for rule, nonzero in (("fobos", False), ("ftrl", True)):
        learner = Learner(update=rule, l1=1.0, eta0=0.5, fit_intercept=False)
        for _ in range(20):
            learner.learn(batch)
        assert (learner.nnz > 0) == nonzero, rule


def test_the_worked_example_of_the_docs():
    """docs/formats.md, "Interactions", worked example: pinned keys."""
    line = b"1 |user u7 |ad:0.5 42 banner:2\n"
    batch = next(read_batches(io.BytesIO(line), "vw", interactions=["ua"]))
    assert batch.keys.tolist() == [17528876509969516432, 42, 6672333852327294411,
                                   5685519860920403963, 11418868371115251150]
    assert batch.values.tolist() == [1.0, 0.5, 1.0, 0.5, 1.0]
    assert ref_cross_keys(42, 17528876509969516432) == 5685519860920403963
    namespaced = next(read_batches(io.BytesIO(line), "vw", interactions=["ua"],
                                   namespaced_integers=True))
    assert namespaced.keys[1] == 7417764888569155506 == (42 + namespace_hash("ad")) % 2**64
    assert namespaced.keys[3] == ref_cross_keys(7417764888569155506, 17528876509969516432)


def test_the_readme_tables_say_what_the_registry_says():
    """README, "Coming from Vowpal Wabbit": the rule table is PENALTY_SCOPE's,
    and every VW flag of issue 16 has its row."""
    readme = (SAMPLES.parent.parent / "README.md").read_text()
    start = readme.index("### Coming from Vowpal Wabbit")
    section = readme[start:readme.index("## The daemon")]
    assert readme.index("## The daemon") > start > readme.index("### A memory budget")
    words = {"example": "per example", "total": "a total", None: "must be 0"}
    seen = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or "`-" in cells[0]:
            continue
        for rule in [r.strip("` ") for r in cells[0].split(",")]:
            if rule in PENALTY_SCOPE:
                seen.add(rule)
                for name, cell in zip(("l1", "l2"), cells[1:]):
                    assert words[PENALTY_SCOPE[rule][name]] in cell, (rule, name, cell)
    assert seen == set(PENALTY_SCOPE)
    for flag in ("`-b", "`--l1", "`--l2", "`-l ", "`--power_t", "`--passes", "`-q ab",
                 "`-i ", "`-f ", "`-t`", "`-p ", "`--loss_function"):
        assert f"| {flag}" in section, flag


def test_cross_arrays_on_random_namespace_ids_of_every_byte():
    """Ids the VW reader never makes (0, ':', 255) cross like any other."""
    rng = random.Random(17)
    alphabet = [0, 32, 58, 97, 98, 255]
    for terms in (["::"], ["ab"], [":a", "  "], ["aab", "~~"], [" :"]):
        feats, indptr = [], [0]
        for _ in range(40):
            row = [(rng.getrandbits(64), rng.uniform(-2, 2), rng.choice(alphabet))
                   for _ in range(rng.randint(0, 6))]
            feats.append(row)
            indptr.append(indptr[-1] + len(row))
        flat = [f for row in feats for f in row]
        out_ptr, keys, values = cross_arrays(
            indptr, np.array([k for k, _, _ in flat], dtype=np.uint64),
            [v for _, v, _ in flat], np.array([c for _, _, c in flat], dtype=np.uint8), terms)
        for r, row in enumerate(feats):
            want = [(k, v) for k, v, _ in row] + ref_crossed(row, terms)
            got = slice(out_ptr[r], out_ptr[r + 1])
            assert keys[got].tolist() == [k for k, _ in want], (terms, r)
            np.testing.assert_array_equal(bits(values[got]), bits([v for _, v in want]))


def test_garbage_with_interactions_never_crashes():
    rng = random.Random(23)
    pieces = [b"|", b"|a", b"|b:2", b" ", b"x", b"42", b":", b"1", b"\n", b"\t", b"-1 ",
              b"'t", b"|\xc3", b"::", b"|a:0"]
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        try:
            for batch in read_batches(io.BytesIO(data), "vw", interactions=["::", "abb"],
                                      namespaced_integers=True, block_size=7):
                assert batch.indptr[-1] == batch.keys.size == batch.values.size
        except ParseError:
            pass


def test_with_interactions_a_batch_ends_at_its_feature_bound(monkeypatch):
    """Memory stays bounded: a batch ends once it holds the parser's
    max_nnz features (INTERACTIONS_BATCH_NNZ, here 20), and the rows are
    those of one unbounded read."""
    from onlinel1._kernels import parse
    from onlinel1.io import readers
    assert parse.Parser("vw").max_nnz == -1
    assert parse.Parser("vw", False, False, ("ab",)).max_nnz == parse.INTERACTIONS_BATCH_NNZ == 1 << 25
    data = vw_text(random_rows(31, 200))
    whole = collect(io.BytesIO(data), interactions=["ab", "::"])

    def small(*args):
        parser = parse.Parser(*args)
        parser.max_nnz = 20 if parser.max_nnz >= 0 else -1
        return parser

    monkeypatch.setattr(readers, "Parser", small)
    batches = list(read_batches(io.BytesIO(data), "vw", interactions=["ab", "::"]))
    assert len(batches) > 10
    for batch in batches[:-1]:
        last_row = batch.indptr[-1] - batch.indptr[-2]
        assert batch.nnz - last_row < 20 <= batch.nnz or batch.n_rows == 8192
    joined = collect(io.BytesIO(data), interactions=["ab", "::"])
    np.testing.assert_array_equal(joined.indptr, whole.indptr)
    np.testing.assert_array_equal(joined.keys, whole.keys)
