"""Shared fixtures: real data sets, from ../shared/datasets when present and
from the samples in tests/data otherwise."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parent
SAMPLES = TESTS / "data"
SHARED = TESTS.parent.parent / "shared" / "datasets"


def shared_path(relative: str) -> pathlib.Path:
    """Path of a file under ../shared/datasets; skip the test if absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"../shared/datasets/{relative} is not present (the shared data sets "
                    f"live beside the checkout); the tests/data samples cover the core checks")
    return path


def load_svmlight(path: pathlib.Path, n_rows: int | None = None):
    """(X as scipy CSR with int32 indices, y) read by scikit-learn's reader,
    the independent oracle for our own parsers."""
    from sklearn.datasets import load_svmlight_file
    X, y = load_svmlight_file(str(path), zero_based=True)
    X = X.tocsr()
    if n_rows is not None:
        X, y = X[:n_rows], y[:n_rows]
    X.indices = X.indices.astype(np.int32)
    X.indptr = X.indptr.astype(np.int32)
    return X, y


@pytest.fixture(scope="session")
def a9a_sample():
    """2,000 real rows of a9a (shipped in tests/data)."""
    return load_svmlight(SAMPLES / "a9a_head2000.svm")


@pytest.fixture(scope="session")
def rcv1_sample():
    """300 real rows of RCV1 with tf-idf values (shipped in tests/data)."""
    return load_svmlight(SAMPLES / "rcv1_small_head300.svm")


@pytest.fixture(scope="session")
def a9a_full():
    """All 32,561 rows of a9a from ../shared (skipped when absent)."""
    return load_svmlight(shared_path("a9a/a9a.train.svm"))


@pytest.fixture(scope="session")
def rcv1_full():
    """The 1,000-row RCV1 subset from ../shared (skipped when absent)."""
    return load_svmlight(shared_path("vw_rcv1/rcv1_small.train.svm"))
