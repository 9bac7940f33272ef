"""Invariant: a client telemetry push (KIP-714) is answered with an error code for any payload, codec and ids --
what does not decompress or is not OTLP MetricsData is INVALID_RECORD, never an exception in the broker."""

import sys
import tempfile
import uuid

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.broker.client_metrics import ClientInfo, ClientTelemetry, Subscriptions
    from loosely.protocol.errors import ErrorCode
    from loosely.storage.fs import OsFileSystem

CLIENT = ClientInfo("fuzz", "fuzz", "1", "127.0.0.1", 1)
NOW = [0]
SUBSCRIPTIONS = Subscriptions(OsFileSystem(), tempfile.mkdtemp(prefix="fuzz-telemetry-"))
SUBSCRIPTIONS.replace("all", {"metrics": "*", "interval.ms": "100"})
TELEMETRY = ClientTelemetry(SUBSCRIPTIONS, lambda: NOW[0], telemetry_bytes_max=65_536, export=True)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    NOW[0] += 1_000
    got = TELEMETRY.get_subscriptions(None, CLIENT)
    assert got.error_code == ErrorCode.none
    NOW[0] += 1
    instance = got.instance_id if fdp.ConsumeBool() else uuid.UUID(bytes=fdp.ConsumeBytes(16).ljust(16, b"\0"))
    subscription = got.subscription_id if fdp.ConsumeBool() else fdp.ConsumeInt(4)
    code, _ = TELEMETRY.push(instance, CLIENT, subscription_id=subscription, terminating=fdp.ConsumeBool(),
                             compression_type=fdp.ConsumeIntInRange(-1, 6), payload=fdp.ConsumeBytes(4096))
    assert isinstance(code, ErrorCode)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
