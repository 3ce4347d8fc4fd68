"""Data in: streaming readers (svmlight/libsvm, Vowpal Wabbit text),
feature hashing, and read-ahead (parsing in a second thread).  The formats
are specified in docs/formats.md."""
from onlinel1.io.hashing import HASH_SEED, feature_key, feature_keys
from onlinel1.io.readahead import read_ahead
from onlinel1.io.readers import ParseError, read_batches

__all__ = ["HASH_SEED", "ParseError", "feature_key", "feature_keys", "read_ahead", "read_batches"]
