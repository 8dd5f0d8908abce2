import pandas as pd
import pytest

from tests.helpers import DATA


@pytest.fixture(scope="module")
def table():
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def local_li_x_o(mp_dev_source):
    return mp_dev_source.fetch("Li-*-O")
