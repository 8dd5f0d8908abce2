"""Where the work runs: Dask clusters (local, an address, batch-system workers), `screen submit`'s
batch jobs and campaigns, and watching the tasks (worker loss, task errors, a full disk)."""
