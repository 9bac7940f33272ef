"""The Apache Kafka launcher's own logic (no Kafka started here)."""

from __future__ import annotations

import base64

from loosely.testing.apache_kafka import _random_cluster_id


def test_cluster_ids_never_look_like_an_option() -> None:
    # One id in 64 would begin with '-' if drawn once; 4,000 draws make a missed redraw all but certain to show.
    ids = [_random_cluster_id() for _ in range(4000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
