"""The sparse weight store (``onlinel1._kernels.store.WeightStore``) against a
plain Python dict.

The store is one open-addressing table of slots (the key's hash, weight
and state side by side; ordered linear probing from the multiply-shift
reduction of ``fmix64(key)``, the slots sorted by hash, into an overflow run
after the home slots; insertion and deletion shift runs; the key 0 in a
slot of its own).  Its bugs would hide in probe clusters, in clusters that
run into the overflow slots, in insertion and deletion inside such
clusters, in rehashing and in the zero key.  So besides random keys the tests use keys *built* to collide:
``fmix64`` is a bijection, and ``_key_with_hash`` inverts it, so a key can
be given any home slot in every table size.

* a hypothesis state machine (inserts, updates, deletions, shrink, export /
  load round trips, bulk growth and bulk deletion, failed loads) checked
  against a dict after every step, with ``check_invariants()``;
* a seeded run of about three million operations through the Python
  methods, which also checks that memory follows the live keys after
  ``shrink()``;
* the error paths.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from onlinel1._kernels.store import WeightStore

U64 = (1 << 64) - 1
MAX_LOAD = 0.85         # store.pyx: MAX_LOAD_NUM / MAX_LOAD_DEN
MIN_TABLE = 16          # store.pyx: MIN_CAPACITY

# ---------------------------------------------------------------- fmix64

_C1 = 0xFF51AFD7ED558CCD
_C2 = 0xC4CEB9FE1A85EC53
_C1_INV = pow(_C1, -1, 1 << 64)
_C2_INV = pow(_C2, -1, 1 << 64)


def _xorshift33(k: int) -> int:
    return k ^ (k >> 33)          # an involution: 33 >= 64 / 2


def fmix64(k: int) -> int:
    """MurmurHash3's finaliser, as in store.pyx."""
    k = _xorshift33(k)
    k = (k * _C1) & U64
    k = _xorshift33(k)
    k = (k * _C2) & U64
    return _xorshift33(k)


def _key_with_hash(h: int) -> int:
    """The key whose fmix64 is ``h`` (fmix64 is a bijection of uint64)."""
    h = _xorshift33(h)
    h = (h * _C2_INV) & U64
    h = _xorshift33(h)
    h = (h * _C1_INV) & U64
    return _xorshift33(h)


# The top 20 bits of the hash fix the home slot (floor(h * capacity / 2**64))
# in every table of up to 2**20 slots: keys that share them and differ in
# the low bits collide.  0xFFFFF.. are the last home slots, so these
# clusters run into the overflow slots after them; 0x0.. are the first.
HOME_BITS = (0xFFFFF, 0xFFFFE, 0xFFFFD, 0x0, 0x1, 0x2, 0x7, 0x8)


def colliding_key(top: int, variant: int) -> int:
    return _key_with_hash((top << 44) | variant)


def home_of(key: int, capacity: int) -> int:
    return (fmix64(key) * capacity) >> 64


SMALL = 1 << 17         # store.pyx: SMALL_CAPACITY


def table_size_for(n: int) -> int:
    """store.pyx capacity_for: 80 % load (a third in small tables), at
    least MIN_TABLE slots."""
    if 3 * n < SMALL:
        return max(MIN_TABLE, 3 * n)
    return max(MIN_TABLE, SMALL, -(-n * 5 // 4))


def over_max_load(n: int, capacity: int) -> bool:
    """store.pyx over_max_load: a half in small tables, else 85 %."""
    return 2 * n > capacity if capacity < SMALL else n * 20 > capacity * 17


def total_slots(capacity: int) -> int:
    """Home slots plus store.pyx overflow_for."""
    return capacity + 64 + capacity // 256


def test_fmix64_inverse_and_key_builder():
    for x in (0, 1, 2, U64, 1 << 63, 0x123456789ABCDEF0):
        assert fmix64(_key_with_hash(x)) == x
        assert _key_with_hash(fmix64(x)) == x
    assert fmix64(0) == 0
    keys = [colliding_key(0xFFFFF, v) for v in range(50)]
    assert len(set(keys)) == 50
    assert {fmix64(k) >> 44 for k in keys} == {0xFFFFF}
    for capacity in (16, 21, 1000, 1 << 20):
        assert {home_of(k, capacity) for k in keys} == {capacity - 1}


# ---------------------------------------------------------------- helpers

def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same_row(got, want) -> bool:
    """Bit-for-bit equality of two weight/state tuples (NaN, -0.0 included)."""
    return got is not None and len(got) == len(want) and \
        all(bits(a) == bits(b) for a, b in zip(got, want))


def assert_matches(store: WeightStore, model: dict, n_aux: int) -> None:
    """The store holds exactly the rows of ``model`` (key -> [w, aux...])."""
    store.check_invariants()
    assert len(store) == len(model)
    keys, w, aux = store.export()
    assert keys.dtype == np.uint64 and w.dtype == np.float64
    assert len(aux) == n_aux
    assert keys.shape == w.shape == (len(model),)
    assert all(col.shape == (len(model),) and col.dtype == np.float64 for col in aux)
    assert len(np.unique(keys)) == len(model)
    got = {int(k): [float(w[i])] + [float(col[i]) for col in aux]
           for i, k in enumerate(keys.tolist())}
    assert got.keys() == model.keys()
    for k, row in model.items():
        assert same_row(got[k], row), (k, got[k], row)
    assert store.n * 20 <= store.table_slots * 17


def model_set(model: dict, n_aux: int, key: int, weight: float, aux: tuple) -> None:
    # A new key's state columns start at 0; an update overwrites only the
    # columns it gives.
    row = model.get(key)
    if row is None:
        row = model[key] = [0.0] * (1 + n_aux)
    row[0] = weight
    for a, value in enumerate(aux):
        row[1 + a] = value


def exported(store: WeightStore):
    keys, w, aux = store.export()
    return keys.tobytes(), w.tobytes(), [c.tobytes() for c in aux]


def contents(store: WeightStore) -> dict:
    """key -> the bytes of its weight and state, whatever the order."""
    keys, w, aux = store.export()
    return {int(k): bits(w[i]) + b"".join(bits(c[i]) for c in aux)
            for i, k in enumerate(keys.tolist())}


# ---------------------------------------------------------------- strategies

SMALL_POOL = st.integers(min_value=0, max_value=40)
EXTREMES = st.sampled_from([0, 1, U64, U64 - 1, 1 << 63, (1 << 63) - 1, 1 << 32, (1 << 32) - 1])
FULL_RANGE = st.integers(min_value=0, max_value=U64)
COLLIDING = st.builds(colliding_key, st.sampled_from(HOME_BITS), st.integers(0, 7))
KEYS = st.one_of(SMALL_POOL, COLLIDING, EXTREMES, FULL_RANGE)
VALUES = st.floats(allow_nan=True, allow_infinity=True, width=64)


# ---------------------------------------------------------------- state machine

class StoreMachine(RuleBasedStateMachine):
    """A store and a twin against a dict.

    The twin sees the same inserts, updates and deletions but never a
    shrink or an export/load round trip, so while the store has not been
    rebuilt by one of those either, its export must equal the store's
    *including the order*: the order depends on the history only.
    """

    @initialize(n_aux=st.integers(0, 2))
    def start(self, n_aux):
        self.n_aux = n_aux
        self.store = WeightStore(n_aux)
        self.twin = WeightStore(n_aux)
        self.model: dict[int, list[float]] = {}
        self.same_history = True
        assert self.store.n_aux == n_aux
        assert len(self.store) == 0 and self.store.table_slots == MIN_TABLE

    def _set(self, key, weight, aux):
        self.store.set(key, weight, *aux)
        self.twin.set(key, weight, *aux)
        model_set(self.model, self.n_aux, key, weight, aux)

    def _delete(self, key):
        present = key in self.model
        assert self.store.delete(key) is present
        assert self.twin.delete(key) is present
        self.model.pop(key, None)

    @rule(key=KEYS, weight=VALUES, data=st.data())
    def set_key(self, key, weight, data):
        aux = data.draw(st.lists(VALUES, min_size=0, max_size=self.n_aux).map(tuple))
        self._set(key, weight, aux)
        assert same_row(self.store.get(key), self.model[key])

    @precondition(lambda self: self.model)
    @rule(data=st.data(), weight=VALUES)
    def update_live_key(self, data, weight):
        key = data.draw(st.sampled_from(sorted(self.model)))
        aux = data.draw(st.lists(VALUES, min_size=0, max_size=self.n_aux).map(tuple))
        self._set(key, weight, aux)

    @rule(key=KEYS)
    def delete_any(self, key):
        self._delete(key)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_live_key(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        self._delete(key)
        assert key not in self.store and self.store.get(key) is None
        assert self.store.delete(key) is False

    @rule(key=KEYS)
    def lookup(self, key):
        assert (key in self.store) is (key in self.model)
        got = self.store.get(key)
        if key in self.model:
            assert same_row(got, self.model[key])
        else:
            assert got is None
            assert self.store.get(key, "absent") == "absent"

    @rule(low=st.sampled_from(HOME_BITS), first=st.integers(0, 2000),
          count=st.integers(1, 300), weight=VALUES)
    def bulk_insert_cluster(self, low, first, count, weight):
        # Many keys with the same home slot: one long cluster, growth and
        # rehashing on the way.
        for v in range(first, first + count):
            self._set(colliding_key(low, v), weight, ())

    @rule(start=st.integers(0, 1 << 40), count=st.integers(1, 500))
    def bulk_insert_sequential(self, start, count):
        for key in range(start, start + count):
            self._set(key, float(key % 97), (1.0,) * self.n_aux)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), fraction=st.floats(0.1, 1.0))
    def bulk_delete(self, data, fraction):
        live = sorted(self.model)
        order = data.draw(st.permutations(live))
        for key in order[: max(1, int(len(live) * fraction))]:
            self._delete(key)

    @rule()
    def shrink(self):
        slots_before, mem_before = self.store.table_slots, self.store.memory_bytes
        self.store.shrink()
        self.same_history = self.same_history and self.store.table_slots == slots_before
        assert self.store.table_slots <= slots_before
        assert self.store.memory_bytes <= mem_before
        # After a shrink memory follows the live rows (within the 4x slack).
        n = len(self.model)
        assert self.store.table_slots <= max(MIN_TABLE, 10 * n)
        assert self.store.memory_bytes <= (11 * n + 1000) * self.store.slot_size

    @rule(fresh=st.booleans())
    def export_load_roundtrip(self, fresh):
        before = contents(self.store)
        keys, w, aux = self.store.export()
        target = WeightStore(self.n_aux) if fresh else self.store
        target.load(keys, w, aux)
        assert contents(target) == before
        self.store = target
        self.same_history = False

    @rule(data=st.data())
    def load_new_contents(self, data):
        keys = data.draw(st.lists(KEYS, unique=True, max_size=60))
        w = data.draw(st.lists(VALUES, min_size=len(keys), max_size=len(keys)))
        aux = [data.draw(st.lists(VALUES, min_size=len(keys), max_size=len(keys)))
               for _ in range(self.n_aux)]
        as_arrays = data.draw(st.booleans())
        if as_arrays:
            args = (np.array(keys, dtype=np.uint64), np.array(w, dtype=np.float64),
                    [np.array(c, dtype=np.float64) for c in aux])
        else:
            args = (keys, w, aux)
        self.store.load(*args)
        self.twin.load(*args)
        self.model = {k: [w[i]] + [c[i] for c in aux] for i, k in enumerate(keys)}
        got_keys, _, _ = self.store.export()
        assert sorted(got_keys.tolist()) == sorted(keys)
        self.same_history = True                # both rebuilt from the same rows

    @rule(data=st.data())
    def failed_load_changes_nothing(self, data):
        before = exported(self.store)
        slots = self.store.table_slots
        n = len(self.model) + 2
        keys = list(range(100, 100 + n))
        kind = data.draw(st.sampled_from(["duplicate", "short_weights", "long_weights",
                                          "aux_count", "aux_length"]))
        w = [1.0] * n
        aux = [[2.0] * n for _ in range(self.n_aux)]
        if kind == "duplicate":
            keys[-1] = keys[0]
        elif kind == "short_weights":
            w = w[:-1]
        elif kind == "long_weights":
            w = w + [3.0]
        elif kind == "aux_count":
            aux = aux + [[2.0] * n] if data.draw(st.booleans()) or not aux else aux[:-1]
        elif kind == "aux_length":
            if not aux:
                aux = [[2.0] * n]   # wrong count instead; still a ValueError
            else:
                aux[-1] = aux[-1][:-1]
        with pytest.raises(ValueError):
            self.store.load(keys, w, aux)
        assert exported(self.store) == before
        assert self.store.table_slots == slots

    @invariant()
    def agrees_with_dict_and_twin(self):
        if not hasattr(self, "store"):
            return
        assert_matches(self.store, self.model, self.n_aux)
        if self.same_history:
            assert exported(self.store) == exported(self.twin)
        else:
            assert contents(self.store) == contents(self.twin)


StoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestStoreMachine = StoreMachine.TestCase


# ---------------------------------------------------------------- @given over op lists

OPS = st.lists(st.tuples(st.sampled_from(["set", "set", "delete"]),
                         st.one_of(COLLIDING, SMALL_POOL, EXTREMES)),
               max_size=200)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, n_aux=st.integers(0, 2))
def test_operation_lists_against_dict(ops, n_aux):
    store, model = WeightStore(n_aux), {}
    for i, (op, key) in enumerate(ops):
        if op == "set":
            aux = tuple(float(-i - a) for a in range(n_aux))
            store.set(key, float(i), *aux)
            model_set(model, n_aux, key, float(i), aux)
        else:
            assert store.delete(key) is (model.pop(key, None) is not None)
        store.check_invariants()
        assert len(store) == len(model)
    assert_matches(store, model, n_aux)


@settings(max_examples=60, deadline=None)
@given(lows=st.lists(st.sampled_from(HOME_BITS), min_size=1, max_size=8),
       order=st.randoms(use_true_random=False))
def test_deleting_every_key_of_an_overflowing_cluster_in_any_order(lows, order):
    # At most 8 keys: they fit a 16-slot table (half full); those with homes
    # in the last slots run into the overflow slots after them.
    keys = [colliding_key(low, v) for v, low in enumerate(lows)]
    store, model = WeightStore(1), {}
    for i, k in enumerate(keys):
        store.set(k, float(i), float(-i))
        model[k] = [float(i), float(-i)]
    assert store.table_slots == MIN_TABLE
    order.shuffle(keys)
    for k in keys:
        assert store.delete(k)
        del model[k]
        assert_matches(store, model, 1)
        for rest in model:
            assert same_row(store.get(rest), model[rest])


# ---------------------------------------------------------------- deterministic cases

def test_empty_store():
    for n_aux in (0, 1, 2):
        store = WeightStore(n_aux)
        assert len(store) == 0 and store.n_aux == n_aux
        assert store.get(0) is None and 0 not in store and store.delete(0) is False
        keys, w, aux = store.export()
        assert keys.size == w.size == 0 and len(aux) == n_aux
        store.check_invariants()
        store.shrink()
        store.load([], [], [[]] * n_aux)
        assert_matches(store, {}, n_aux)
    assert WeightStore().n_aux == 0


def test_extreme_keys_and_exact_values():
    store = WeightStore(2)
    rows = {0: [0.0, -0.0, 1.0], U64: [-0.0, float("inf"), float("-inf")],
            1 << 63: [5e-324, 1.7976931348623157e308, float("nan")], 1: [1.0, 2.0, 3.0]}
    for k, r in rows.items():
        store.set(k, *r)
    assert_matches(store, rows, 2)
    assert U64 in store and np.uint64(U64) in store
    assert same_row(store.get(np.uint64(U64)), rows[U64])
    assert store.delete(0) and 0 not in store
    del rows[0]
    assert_matches(store, rows, 2)


def test_update_keeps_unspecified_state_columns():
    store = WeightStore(2)
    store.set(7, 1.0)
    assert store.get(7) == (1.0, 0.0, 0.0)        # a new row starts at zero
    store.set(7, 2.0, 5.0, 6.0)
    store.set(7, 3.0, 8.0)
    assert store.get(7) == (3.0, 8.0, 6.0)
    store.set(7, 4.0)
    assert store.get(7) == (4.0, 8.0, 6.0)


def test_table_grows_by_a_quarter_past_its_load_bound():
    store = WeightStore(0)
    capacity = MIN_TABLE
    for n in list(range(1, 5000)) + list(range(5000, 400_000, 997)):
        if n < 5000:
            store.set(n * 7919, 1.0)
        else:
            store.load(np.arange(1, n + 1, dtype=np.uint64), np.ones(n))
            capacity = table_size_for(n)
        # Insert-only history: grow by 1/4 (at least to the load a table is
        # built at) when the load would pass its bound.
        if over_max_load(n, capacity):
            capacity = max(capacity + capacity // 4, table_size_for(n))
        assert store.table_slots == capacity, n
        assert n <= MAX_LOAD * store.table_slots
    store.check_invariants()


def test_export_returns_copies():
    store = WeightStore(1)
    store.set(3, 1.0, 2.0)
    keys, w, aux = store.export()
    keys[0], w[0], aux[0][0] = 9, 9.0, 9.0
    assert store.get(3) == (1.0, 2.0) and 9 not in store


def test_load_rebuilds_table():
    keys = np.array([colliding_key(0xFFFFF, v) for v in range(300)] + [0, U64], dtype=np.uint64)
    w = np.arange(keys.size, dtype=np.float64)
    store = WeightStore(0)
    for k in range(100):
        store.set(k, -1.0)
    store.load(keys, w)
    store.check_invariants()
    k2, w2, _ = store.export()
    assert dict(zip(k2.tolist(), w2.tolist())) == dict(zip(keys.tolist(), w.tolist()))
    assert store.table_slots == table_size_for(keys.size)
    for i, k in enumerate(keys.tolist()):
        assert store.get(k) == (float(i),)
    assert all(k not in store for k in range(1, 100))
    # Then a smaller load gives the memory back.
    store.load([5], [1.0])
    assert store.table_slots == MIN_TABLE
    assert_matches(store, {5: [1.0]}, 0)


#: The zero key's slot beside the table: 5 words (its hash, the weight, up
#: to 3 state values: 2 of the rule's and the clock of a memory budget).
ZERO_SLOT = 40


def test_memory_bytes_counts_slots():
    for n_aux in (0, 1, 2):
        store = WeightStore(n_aux)
        for k in range(1000):
            store.set(k, 1.0)
        assert store.slot_size == 8 * (2 + n_aux)
        # The table (small: calloc'd exactly) and the zero key's slot.
        assert store.memory_bytes == total_slots(store.table_slots) * store.slot_size + ZERO_SLOT
        assert not store.huge_pages


def test_large_table_is_mapped_for_huge_pages():
    store = WeightStore(1)
    store.load(np.arange(1, 300_001, dtype=np.uint64), np.ones(300_000), [np.zeros(300_000)])
    # 375k home slots of 24 bytes: past the 4 MiB threshold, rounded to 2 MiB.
    assert store.huge_pages
    assert store.memory_bytes - ZERO_SLOT >= store.table_slots * 24
    assert (store.memory_bytes - ZERO_SLOT) % (2 << 20) == 0
    assert store.memory_bytes - ZERO_SLOT - store.table_slots * 24 < 2 << 20
    store.check_invariants()
    assert store.get(300_000) == (1.0, 0.0) and store.get(300_001) is None


def test_deletion_shifts_the_cluster_back():
    # Four keys with one home: they sit in four consecutive slots, in hash
    # order; deleting the second pulls the third and fourth back by one.
    keys = [colliding_key(0x40000, v) for v in range(4)]
    store = WeightStore(1)
    for i, k in enumerate(keys):
        store.set(k, float(i), -float(i))
    home = home_of(keys[0], store.table_slots)
    assert all(home_of(k, store.table_slots) == home for k in keys)
    assert store.export()[0].tolist() == keys
    store.delete(keys[1])
    assert store.export()[0].tolist() == [keys[0], keys[2], keys[3]]
    store.check_invariants()
    assert store.get(keys[3]) == (3.0, -3.0)
    # Inserting it again (a smaller hash than keys[2]) shifts them forward.
    store.set(keys[1], 9.0)
    assert store.export()[0].tolist() == keys
    store.check_invariants()


def test_zero_key_has_its_own_slot():
    store = WeightStore(2)
    store.set(0, 1.5, 2.5, 3.5)
    store.set(5, 1.0)
    assert len(store) == 2 and 0 in store and store.get(0) == (1.5, 2.5, 3.5)
    keys, w, aux = store.export()
    assert keys.tolist()[-1] == 0 and w.tolist()[-1] == 1.5      # last in store order
    assert store.delete(0) and 0 not in store and len(store) == 1
    store.set(0, 7.0)
    assert store.get(0) == (7.0, 0.0, 0.0)                       # a new key starts at 0
    store.check_invariants()


def test_millions_of_operations_against_dict():
    """About 3.2 million seeded operations through the Python methods.

    Grow to ~300k live keys (small-int pool, full-range uint64 keys, 0 and
    2**64-1, and keys built to share a home slot), churn, delete 99 % of the
    keys, check that ``shrink()`` gives the table and the rows back, then
    churn again on the shrunk store."""
    rng = np.random.default_rng(20261124)
    n_aux = 2
    pool = np.concatenate([
        np.arange(250_000, dtype=np.uint64),
        rng.integers(0, U64, size=100_000, dtype=np.uint64, endpoint=True),
        np.array([0, U64, U64 - 1, 1 << 63], dtype=np.uint64),
        np.array([colliding_key(low, v) for low in HOME_BITS for v in range(500)],
                 dtype=np.uint64),
    ])
    pool = np.unique(pool).tolist()
    store, model = WeightStore(n_aux), {}
    st_set, st_del, st_get = store.set, store.delete, store.get
    ops_done = 0

    def churn(n_ops, p_set, n_keys):
        nonlocal ops_done
        idx = rng.integers(0, n_keys, size=n_ops).tolist()
        is_set = (rng.random(n_ops) < p_set).tolist()
        vals = rng.standard_normal(n_ops).tolist()
        check_every = 200_003
        for i, (j, s, v) in enumerate(zip(idx, is_set, vals)):
            key = pool[j]
            if s:
                if i & 3 == 0:
                    st_set(key, v)                      # w only: state kept
                    row = model.get(key)
                    if row is None:
                        model[key] = [v, 0.0, 0.0]
                    else:
                        row[0] = v
                else:
                    st_set(key, v, -v, v * 0.5)
                    model[key] = [v, -v, v * 0.5]
            else:
                assert st_del(key) is (model.pop(key, None) is not None)
            if i % 16 == 0:
                probe = pool[(j * 7 + 1) % n_keys]
                row = model.get(probe)
                got = st_get(probe)
                assert (got is None) if row is None else (got == tuple(row)), probe
            if i % check_every == 0:
                store.check_invariants()
                assert len(store) == len(model)
        ops_done += n_ops

    churn(1_200_000, 0.85, len(pool))          # growth
    assert_matches(store, model, n_aux)
    churn(1_000_000, 0.5, len(pool))           # churn at size
    assert_matches(store, model, n_aux)
    peak = len(model)
    assert peak > 150_000

    # Delete 99 % of the live keys, in random order.
    live = np.array(list(model), dtype=np.uint64)
    rng.shuffle(live)
    for key in live[: len(live) - len(live) // 100].tolist():
        assert st_del(key)
        del model[key]
    ops_done += len(live) - len(live) // 100
    assert_matches(store, model, n_aux)
    slots_before, mem_before = store.table_slots, store.memory_bytes
    assert slots_before * MAX_LOAD >= peak             # deletion does not shrink by itself
    store.shrink()
    assert_matches(store, model, n_aux)
    n = len(model)
    assert store.table_slots == table_size_for(n) < slots_before // 16
    assert store.memory_bytes < mem_before // 16
    assert store.memory_bytes == total_slots(store.table_slots) * (8 + 8 * 3) + ZERO_SLOT

    # The shrunk store keeps working: churn on a smaller key range, grow again.
    churn(800_000, 0.6, 60_000)
    assert_matches(store, model, n_aux)
    assert ops_done >= 3_000_000


# ---------------------------------------------------------------- error paths

@pytest.mark.parametrize("n_aux, clocked", [(-1, False), (4, False), (100, False),
                                             (3, True)])
def test_bad_n_aux(n_aux, clocked):
    with pytest.raises(ValueError, match="n_aux"):
        WeightStore(n_aux, clocked)


def test_three_state_words_make_a_40_byte_slot():
    store = WeightStore(3)
    assert store.slot_size == 40
    store.set(9, 1.5, 2.0, 3.0, 4.0)
    assert store.get(9) == (1.5, 2.0, 3.0, 4.0)
    assert WeightStore(2, clocked=True).slot_size == 40


@pytest.mark.parametrize("n_aux", [0, 1, 2])
def test_set_with_too_many_state_values(n_aux):
    store = WeightStore(n_aux)
    store.set(1, 1.0, *([0.5] * n_aux))
    before = exported(store)
    with pytest.raises(ValueError, match="state columns"):
        store.set(2, 1.0, *([0.5] * (n_aux + 1)))
    with pytest.raises(ValueError, match="state columns"):
        store.set(1, 9.0, *([0.5] * (n_aux + 1)))
    assert exported(store) == before and 2 not in store


@pytest.mark.parametrize("key", [-1, 1 << 64, -(1 << 70)])
def test_set_with_key_outside_uint64(key):
    store = WeightStore(0)
    store.set(5, 1.0)
    with pytest.raises(OverflowError):
        store.set(key, 1.0)
    assert_matches(store, {5: [1.0]}, 0)


def _filled(n_aux: int, n: int = 40) -> WeightStore:
    store = WeightStore(n_aux)
    for k in range(n):
        store.set(colliding_key(HOME_BITS[k % 8], k), float(k), *([float(-k)] * n_aux))
    return store


LOAD_ERRORS = {
    "duplicate keys": lambda n_aux: ([1, 2, 1], [1.0, 2.0, 3.0], [[0.0] * 3] * n_aux),
    "duplicate extreme keys": lambda n_aux: (np.array([U64, 0, U64], dtype=np.uint64),
                                             np.zeros(3), [np.zeros(3)] * n_aux),
    "fewer weights": lambda n_aux: ([1, 2, 3], [1.0, 2.0], [[0.0] * 3] * n_aux),
    "more weights": lambda n_aux: ([1, 2], [1.0, 2.0, 3.0], [[0.0] * 2] * n_aux),
    "too many columns": lambda n_aux: ([1, 2], [1.0, 2.0], [[0.0] * 2] * (n_aux + 1)),
    "short column": lambda n_aux: ([1, 2], [1.0, 2.0],
                                   [[0.0] * 2] * (n_aux - 1) + [[0.0]] if n_aux else [[0.0]]),
    "long column": lambda n_aux: ([1, 2], [1.0, 2.0],
                                  [[0.0] * 2] * (n_aux - 1) + [[0.0] * 3] if n_aux else [[0.0]]),
}


@pytest.mark.parametrize("n_aux", [0, 1, 2])
@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_failed_load_raises_and_leaves_the_store_unchanged(case, n_aux):
    store = _filled(n_aux)
    before, slots, mem = exported(store), store.table_slots, store.memory_bytes
    with pytest.raises(ValueError):
        store.load(*LOAD_ERRORS[case](n_aux))
    assert exported(store) == before
    assert (store.table_slots, store.memory_bytes) == (slots, mem)
    store.check_invariants()
    for k in range(40):
        key = colliding_key(HOME_BITS[k % 8], k)
        assert store.get(key) == (float(k),) + (float(-k),) * n_aux


def test_failed_load_missing_columns():
    store = _filled(2)
    before = exported(store)
    with pytest.raises(ValueError, match="state columns"):
        store.load([1, 2], [1.0, 2.0], [[0.0, 0.0]])
    with pytest.raises(ValueError, match="state columns"):
        store.load([1, 2], [1.0, 2.0])
    assert exported(store) == before
    store.check_invariants()


def test_failed_load_with_negative_python_keys():
    store = _filled(0)
    before = exported(store)
    with pytest.raises(OverflowError):
        store.load([-1, 2], [1.0, 2.0])
    assert exported(store) == before
    store.check_invariants()


@pytest.mark.parametrize("n_aux", [1, 2])
@pytest.mark.parametrize("shape", [(2, 2), (2, 1), (1, 2)])
def test_failed_load_with_two_dimensional_column_leaves_the_store_unchanged(n_aux, shape):
    # Before commit 9a30410 a 2-D column passed the length check, load() set
    # n = 0 and copied keys and weights, and only then failed, with the old
    # index table still in place: len() was 0 while old keys were still
    # found, and delete() drove n to -1.
    store = _filled(n_aux)
    before = exported(store)
    aux = [np.zeros(2)] * (n_aux - 1) + [np.zeros(shape)]
    with pytest.raises(ValueError):
        store.load(np.array([7, 8], dtype=np.uint64), np.zeros(2), aux)
    assert exported(store) == before
    store.check_invariants()
    assert 7 not in store and len(store) == 40


@pytest.mark.parametrize("bad", ["not a number", None, object(), [1.0]])
def test_set_with_non_numeric_state_changes_nothing(bad):
    store = WeightStore(2)
    store.set(4, 1.0, 2.0, 3.0)
    before = exported(store)
    for key in (5, 4):                      # a new key and an existing one
        with pytest.raises((TypeError, ValueError)):
            store.set(key, 9.0, 9.0, bad)
        with pytest.raises((TypeError, ValueError)):
            store.set(key, bad)
    assert exported(store) == before and 5 not in store
    store.check_invariants()


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 1000])
def test_column_chunks_equal_export_in_every_chunking(chunk_rows):
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(0, 2**63, 50, dtype=np.uint64))
    store = WeightStore(2)
    store.load(keys, rng.normal(size=keys.size), [rng.normal(size=keys.size),
                                                   rng.normal(size=keys.size)])
    k, w, aux = store.export()
    for column, expect in zip((-1, 0, 1, 2), [k, w] + aux):
        chunks = list(store.column_chunks(column, chunk_rows))
        assert all(0 < c.size <= chunk_rows for c in chunks)
        got = np.concatenate(chunks)
        assert got.dtype == expect.dtype and got.tolist() == expect.tolist()
    assert list(WeightStore(0).column_chunks(-1)) == []
    with pytest.raises(ValueError, match="column"):
        next(store.column_chunks(3))
    with pytest.raises(ValueError, match="chunk_rows"):
        next(store.column_chunks(0, 0))


def test_keys_built_to_collide_cost_memory_in_proportion_to_their_number():
    # Every key has the last home slot: one run of n slots past the end of
    # the home slots.  The overflow run grows with it (doubling), the home
    # slots do not: memory stays proportional to the keys, as for random
    # ones, and so does a rebuild.
    n = 5000
    keys = [colliding_key(0xFFFFF, v) for v in range(n)]
    store = WeightStore(0)
    for i, k in enumerate(keys):
        store.set(k, float(i))
    store.check_invariants()
    assert not over_max_load(n, store.table_slots)
    # Home slots (3n in a small table) and an overflow run of at most 2n.
    assert store.memory_bytes <= 6 * n * store.slot_size + 4096
    assert [store.get(k) for k in keys[::97]] == [(float(i),) for i in range(0, n, 97)]
    for k in keys[: n // 2]:
        assert store.delete(k)
    store.shrink()
    store.check_invariants()
    store.load(keys, np.arange(n, dtype=np.float64))
    store.check_invariants()
    assert store.memory_bytes <= 6 * n * store.slot_size + 4096


def test_rebuild_at_a_given_load_keeps_the_contents():
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64))
    store = WeightStore(1)
    store.load(keys, rng.normal(size=keys.size), [rng.normal(size=keys.size)])
    before = contents(store)
    for load in (0.3, 0.6, 0.85):
        store.rebuild(load)
        store.check_invariants()
        assert abs(len(store) / store.table_slots - load) < 0.01
        assert contents(store) == before
    for bad in (0.0, -1.0, 0.9):
        with pytest.raises(ValueError, match="load"):
            store.rebuild(bad)
    small = WeightStore(0)
    small.load(keys[:1000], np.ones(1000))
    with pytest.raises(ValueError, match="over the bound"):
        small.rebuild(0.6)              # a small table runs at most half full


def test_shrink_never_grows_the_home_slots():
    """Found by StoreMachine: 133 keys of one home slot grew the table to
    357 home slots and a long overflow run; after 13 were deleted, shrink
    rebuilt to capacity_for(120) = 360 home slots (less memory, more
    slots).  A shrink keeps at most the home slots it had."""
    store = WeightStore(0)
    for v in range(133):
        store.set(colliding_key(1048575, v), 0.0)
    for v in range(13):
        store.delete(colliding_key(1048575, v))
    slots, memory = store.table_slots, store.memory_bytes
    store.shrink()
    assert store.table_slots <= slots and store.memory_bytes <= memory
    assert sorted(contents(store)) == sorted(colliding_key(1048575, v) for v in range(13, 133))


@pytest.mark.parametrize("n_aux", [0, 2])
def test_a_mapped_table_grows_in_place_keeping_every_entry(n_aux):
    """A table on huge pages (past 4 MiB) grows by extending its mapping and
    moving its entries right, the last first: through many growths, with
    runs long enough to need more overflow slots, every entry stays where
    a lookup finds it, with its values, in hash order and without holes
    (check_invariants)."""
    rng = np.random.default_rng(n_aux)
    store = WeightStore(n_aux)
    # Mapped from the start: a table loaded past the threshold.
    first = rng.integers(1, U64, size=400_000, dtype=np.uint64)
    first = np.unique(first)
    store.load(first, first.astype(np.float64), [first.astype(np.float64) + j
                                                 for j in range(n_aux)])
    assert store.huge_pages
    slots = store.table_slots
    model = {int(k): float(k) for k in first}
    more = np.unique(rng.integers(1, U64, size=400_000, dtype=np.uint64))
    collide = [colliding_key(0xFFFFF, v) for v in range(3000)]   # at the table's end
    growths = 0
    for i, k in enumerate(more.tolist() + collide):
        if k in model:
            continue
        store.set(k, float(k), *(float(k) + j for j in range(n_aux)))
        model[k] = float(k)
        if store.table_slots != slots:
            slots = store.table_slots
            growths += 1
            if growths % 2:
                store.check_invariants()
    assert growths >= 3 and store.huge_pages
    store.check_invariants()
    keys, w, aux = store.export()
    assert len(keys) == len(model)
    assert dict(zip(keys.tolist(), w.tolist())) == model
    for j in range(n_aux):
        assert np.array_equal(aux[j], w + j)
