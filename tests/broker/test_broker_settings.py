"""`loosely broker --config NAME=VALUE` takes Kafka's broker settings in one place, and refuses bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from loosely.broker.config import BrokerConfig
from loosely.broker.server import Broker
from loosely.testing import free_port


def test_bad_values_are_refused_with_the_setting_named(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "loosely.cli.main",
            "broker",
            "--data-dir",
            str(tmp_path),
            "--config",
            "log.retention.ms=soon",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "log.retention.ms" in r.stderr and "soon" in r.stderr
    with pytest.raises(ValueError, match=r"num\.partitions"):
        from loosely.broker.config import split_kafka_settings

        split_kafka_settings({"num.partitions": "many"})
    with pytest.raises(ValueError, match=r"segment\.bytes"):
        Broker(BrokerConfig(data_dir=str(tmp_path), log_defaults={"log.segment.bytes": "1"}))


def test_kafka_settings_reach_the_broker(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loosely.cli.main",
            "broker",
            "--data-dir",
            str(tmp_path),
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            "num.partitions=3",
            "--config",
            "log.retention.ms=123456",
            "--config",
            "zookeeper.connect=ignored:2181",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        r = subprocess.run(
            ["kcat", "-P", "-b", f"127.0.0.1:{port}", "-t", "auto"],
            input="x\n",
            text=True,
            capture_output=True,
            timeout=30,
            check=True,
        )
        assert r.returncode == 0
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        assert len(admin.list_topics("auto", timeout=10).topics["auto"].partitions) == 3
        from confluent_kafka.admin import ConfigResource

        res = ConfigResource(ConfigResource.Type.TOPIC, "auto")
        assert admin.describe_configs([res])[res].result(10)["retention.ms"].value == "123456"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "ignoring unknown setting zookeeper.connect" in err
