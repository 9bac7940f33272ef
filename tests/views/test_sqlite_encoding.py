"""The SQLite sink's direct write of a latest-value fold (one JSON document, json_quote in SQL) stores exactly the
rows, byte for byte and type for type, that the row-by-row path stores (encode_value in Python)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from loosely.views import Add, Batch, SinkError, SqliteSink, TopicPartition, count_by_key, latest_by_key

TP = TopicPartition("t", 0)
texts = st.text(st.characters(codec="utf-8"), max_size=12)  # control characters, quotes, backslashes, NUL, astral
values = st.one_of(st.none(), texts, st.integers(-(2**63), 2**63 - 1), st.integers(2**63, 2**70),
                   st.binary(max_size=4), st.floats(allow_nan=False), st.dictionaries(texts, texts, max_size=2))
folds = st.dictionaries(texts, values, max_size=8)


def stored(latest: dict[str, object], *, direct: bool) -> tuple[list[tuple[object, ...]] | str, bool]:
    """The rows stored (or the error, for values neither path can store: integers beyond 64 bits), and whether
    the direct write took the fold."""
    sink = SqliteSink(":memory:")
    sink.open(latest_by_key("v", ["t"]))
    took = sink._latest_statements('"v__v1"', latest) is not None  # type: ignore[arg-type]
    if not direct:
        sink._latest_statements = lambda t, latest: None  # type: ignore[method-assign]
    try:
        sink.apply(Batch(latest=dict(latest), starts={TP: None}, ends={TP: 1}, records=1))  # type: ignore[arg-type]
    except SinkError as e:
        return type(e.__cause__).__name__, took
    finally:
        rows = sink._db.execute('SELECT key, value, typeof(value) FROM "v__v1" ORDER BY key').fetchall()
        sink.close()
    return rows, took


@settings(max_examples=200, deadline=None)
@given(folds)
def test_the_direct_write_stores_what_the_row_by_row_write_stores(latest: dict[str, object]) -> None:
    assert stored(latest, direct=True)[0] == stored(latest, direct=False)[0]


def test_text_and_integer_folds_take_the_direct_write() -> None:
    every_ascii = "".join(map(chr, range(1, 128)))
    rows, took = stored({"a": every_ascii, "b": 'q"\\', "c": None, "d": -(2**63), "é": "☃😀"}, direct=True)
    assert took
    assert [k for k, *_ in rows] == ["a", "b", "d", "é"]  # "c" deleted (it was never there)
    _, took = stored({"a": "x\x00y"}, direct=True)
    assert not took  # json_each would cut the text at the NUL: row by row instead


def test_a_key_with_a_nul_character_is_stored_whole() -> None:
    sink = SqliteSink(":memory:")
    sink.open(count_by_key("c", ["t"]))
    sink.apply(Batch.build([(TP, 0, 0, Add("a\x00b", 1)), (TP, 1, 0, Add("a", 1))]))
    assert sink._db.execute('SELECT key, value FROM "c__v1" ORDER BY key').fetchall() == [("a", 1), ("a\x00b", 1)]
    sink.close()
