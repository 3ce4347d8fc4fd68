"""Past one machine: the daemon over weights sharded on Ray (docs/scaling.md).

The layers, each usable without the next:

* ``partition.py``: keys -> 1024 virtual partitions (a seeded hash) ->
  shards (a table);
* ``shard.py``: one shard's weights (a ``Learner`` of its keys), applying
  numbered mini-batches in order, once each;
* ``step.py``: one mini-batch across the shards (split, pull, factors in
  the compiled kernel, apply), with any way of calling them;
* ``kernel.py`` and ``learner.py``: the head's ``ClusterLearner``, a
  ``Learner`` whose kernel sequences mini-batches over the shards, keeps the
  replay log and recovers lost shards, so the daemon runs it unchanged;
* ``manifest.py``: cluster snapshots (a file per shard, then a manifest);
* ``ray_backend.py``: shards and workers as Ray actors (needs
  ``pip install 'onlinel1[cluster]'``; nothing else here imports Ray).
"""
