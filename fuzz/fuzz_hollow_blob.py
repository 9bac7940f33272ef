"""Invariant: a Hollow snapshot or delta loads or raises HollowBlobError, never anything else, and a failed
delta leaves the loaded state as it was.

Inputs are edits of small Java-written blobs from tests/hollow/golden (random bytes would almost never get past
the blob magic): the fuzzer picks a blob, then overwrites, truncates and inserts bytes.
"""

import gzip
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.hollow.core import HollowBlobError, ReadStateEngine, SchemaKind

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "hollow" / "golden"


def _blob(chain: str, name: str) -> bytes:
    return gzip.decompress((GOLDEN / chain / f"{name}.gz").read_bytes())


# (blob to mutate, snapshot of the state a delta applies to, or None for a snapshot)
CASES = [
    (_blob("spec-8", "snapshot-2"), None),
    (_blob("evolve", "snapshot-3"), None),
    (_blob("spec-8", "delta-1-2"), _blob("spec-8", "snapshot-1")),
    (_blob("evolve", "delta-2-3"), _blob("evolve", "snapshot-2")),
]


def _fingerprint(engine: ReadStateEngine) -> tuple[object, ...]:
    """Cheap stand-in for the full dump: tag, checksum over every record, populated counts."""
    return (engine.current_tag, engine.checksum().value, [t.record_count() for t in engine.types()])


def _read_everything(engine: ReadStateEngine) -> None:
    engine.checksum()
    for t in engine.types():
        for o in t.populated_ordinals().tolist():
            if t.kind is SchemaKind.OBJECT:
                t.view.record(o)
            elif t.kind is SchemaKind.MAP:
                t.view.entries(o)
            else:
                t.view.elements(o)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    source, base = CASES[fdp.ConsumeIntInRange(0, len(CASES) - 1)]
    blob = bytearray(source)
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        op = fdp.ConsumeIntInRange(0, 2)
        pos = fdp.ConsumeIntInRange(0, max(0, len(blob) - 1))
        if op == 0 and blob:
            blob[pos] = fdp.ConsumeIntInRange(0, 255)
        elif op == 1:
            del blob[pos:]
        else:
            blob[pos:pos] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
    if base is None:
        try:
            _read_everything(ReadStateEngine.from_snapshot(bytes(blob)))
        except HollowBlobError:
            pass
        return
    engine = ReadStateEngine.from_snapshot(base)
    before = _fingerprint(engine)
    try:
        engine.apply_delta(bytes(blob))
    except HollowBlobError:
        assert _fingerprint(engine) == before, "a failed delta changed the state"
        return
    try:
        _read_everything(engine)
    except HollowBlobError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
