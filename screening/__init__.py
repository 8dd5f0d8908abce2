"""screen's domain library: structures -> crystal graphs -> MT-CGCNN -> rankings.

Nothing here imports Dask or the on-disk store, so the library works alone.
"""
__version__ = "0.1.0"
