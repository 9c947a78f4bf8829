"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.db import Database, create_database
from tests.faultkit import Cluster


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(pg_url, tmp_path)
    yield cluster
    cluster.close()


@pytest.fixture
def database(pg_url: str) -> Iterator[Database]:
    db = create_database(pg_url, max_connections=4)
    yield db
    db.dispose()
