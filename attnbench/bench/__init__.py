"""attnbench bench: the variants' cost, side by side.

Modules, in the order a sweep uses them:

* :mod:`~attnbench.bench.sweep` – the plan (variants × lengths, sdpa always first)
  and its orchestration, the per-variant summaries;
* :mod:`~attnbench.bench.worker` – one measurement in a fresh spawned process with a
  timeout; out of memory, timeouts and errors become statuses;
* :mod:`~attnbench.bench.measure` – what the worker measures: time, peak memory, FLOPs;
* :mod:`~attnbench.bench.fit` – log-log slopes and efficiency lengths;
* :mod:`~attnbench.bench.table`, :mod:`~attnbench.bench.output`,
  :mod:`~attnbench.bench.plot` – rich/markdown tables, json/csv/md files, the PNG.

The command line is :mod:`attnbench.cli.bench`.
"""
