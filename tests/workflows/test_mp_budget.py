"""The Materials Project request budget on a real cluster: four worker processes fetching at
once, through the real mp-api client, from the local test server, which records when every
request came and can answer 429 like a rate-limited API."""
from bisect import bisect_left

import pytest

from screening.sources.mp import MPSource
from workflows.cluster.connection import ClusterSettings, connect
from workflows.mp import share_budget
from screening.query import parse_query
from workflows.run.tasks import fetch_task

pytestmark = pytest.mark.slow

QUERIES = ["Li-Fe-O", "Li-Mn-O", "Li-Co-O", "Li-Ni-O"]  # 32, 32, 20 and 15 current documents


@pytest.fixture(scope="module")
def four_workers():
    with connect(ClusterSettings(workers=4, threads_per_worker=1, dashboard="127.0.0.1:0")) as client:
        client.run(lambda: __import__("mp_api.client"))  # the slow import before the clock matters
        yield client


def fetch_in_parallel(client, source):
    """Each query on its own worker, all at once."""
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 4
    futures = [client.submit(fetch_task, source, parse_query(q), workers=[w], allow_other_workers=False, pure=False)
               for q, w in zip(QUERIES, workers)]
    return {q: [c.id for c in fetched.candidates] for q, fetched in zip(QUERIES, client.gather(futures))}


def busiest_second(server):
    """(most requests the server answered within any one second, all requests, 429 answers) with the key."""
    log = [(t, status) for t, path, status in server.log if path.startswith("/materials/")]
    times = sorted(t for t, _ in log)
    return max(bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), len(times), \
        sum(status == 429 for _, status in log)


def test_four_workers_together_stay_within_the_budget(four_workers, mp_api_env, mp_dev_source):
    expected = {q: [c.id for c in mp_dev_source.fetch(q)] for q in QUERIES}
    # Shared through the scheduler: never more than 8 in any second, so a server that allows
    # 8 per second per key never has to say 429.
    mp_api_env.rate_limit = 8
    source = MPSource(chunk_size=4, rate=8)
    share_budget(four_workers, source)
    assert fetch_in_parallel(four_workers, source) == expected
    shared, n, refused = busiest_second(mp_api_env)
    assert shared <= 8 and n == 25 and refused == 0

    # The control: a budget of 8/s that every worker process keeps for itself lets the four exceed it.
    mp_api_env.log.clear()
    mp_api_env.rate_limit = None
    assert fetch_in_parallel(four_workers, MPSource(chunk_size=4, rate=8)) == expected
    alone, n, _ = busiest_second(mp_api_env)
    print(f"busiest second: {shared} requests with the shared budget of 8, {alone} with 8 per worker")
    assert alone > 8 and n == 25


def test_a_429_storm_still_yields_the_complete_result(four_workers, mp_api_env, mp_dev_source):
    mp_api_env.rate_limit = 3  # far below what the client's budget allows
    source = MPSource(chunk_size=8, rate=50)
    share_budget(four_workers, source)
    got = fetch_in_parallel(four_workers, source)
    assert got == {q: [c.id for c in mp_dev_source.fetch(q)] for q in QUERIES}
    _, n, refused = busiest_second(mp_api_env)
    assert refused >= 5 and n - refused == 13  # every page answered once in the end
    print(f"429 storm: {refused} refusals, {n - refused} answers")
