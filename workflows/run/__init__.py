"""`screen run`: the screening run as a Dask task graph (pipeline.py), its settings (options.py),
partitions (plan.py), worker tasks (tasks.py), the records they pass (records.py), the table
(table.py), the summary (summary.py), the files (outputs.py), the funnel (funnel.py) and what the
terminal shows (terminal.py).

Nothing is imported here: `screen --help` imports options.py alone, without torch, Zarr or Dask.
"""
