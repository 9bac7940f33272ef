"""Fixtures of the read-after-write Hollow tests: one broker of each kind per module (loosely's and Apache Kafka
4.1.1, so every test runs on both), and per test a dataset of its own (topics and blob store), its elected writer
and a client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hollow.raw.raw_support import Actor, Movie
from loosely.hollow.raw import Dataset, RawClient, Writer
from loosely.testing import ApacheKafka, embedded_broker


@pytest.fixture(scope="module", params=["loosely", "kafka"])
def bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        yield kafka.bootstrap_servers
    else:
        with embedded_broker(data_dir=str(tmp_path_factory.mktemp("raw-broker"))) as b:
            yield b.bootstrap_servers


@pytest.fixture
def dataset(bootstrap: str, tmp_path: Path) -> Dataset:
    return Dataset(f"raw-{uuid.uuid4().hex[:8]}", [Movie, Actor], bootstrap_servers=bootstrap,
                   blob_store=str(tmp_path / "blobs"), partitions=2)


@pytest.fixture
def writer(dataset: Dataset) -> Iterator[Writer]:
    with Writer(dataset, http_address="http://writer-a") as w:
        assert w.wait_for_leadership(30_000)
        yield w


@pytest.fixture
def client(dataset: Dataset, writer: Writer) -> Iterator[RawClient]:
    with RawClient(dataset, timeout_ms=10_000) as c:
        yield c
