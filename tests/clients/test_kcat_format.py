"""kcat's formats, delimiters and partitioners as pure functions (the binary itself is checked in tests/compat)."""

from __future__ import annotations

import json

import pytest

from loosely.clients.kcat_format import (
    FormatStringError,
    Msg,
    compile_format,
    json_string,
    parse_delim,
    parse_format,
    render_json,
)
from loosely.clients.partitioner import crc32_partition, murmur2, murmur2_partition


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"\\n", b"\n"),
        (b"\\t", b"\t"),
        (b"\\r", b"\\r"),  # kcat documents \r but parse_delim does not know it
        (b"\\x2c", b","),
        (b"\\x2c\\x2c", b",,"),
        (b"\\x12345", b"\x45"),  # strtoul takes every hex digit, the low byte stays
        (b"a\\nb\\tc", b"a\nb\tc"),
        (b"::", b"::"),
        (b"", b""),
    ],
)
def test_parse_delim(raw: bytes, want: bytes) -> None:
    assert parse_delim(raw) == want


def test_parse_delim_rejects_hex_without_digits() -> None:
    with pytest.raises(FormatStringError, match=r"Delimiter \\xZZ expects hex number"):
        parse_delim(b"\\xZZ")


@pytest.mark.parametrize(
    ("fmt", "want"),
    [
        (b"%s\\n", b"v\n"),
        (b"%k=%s", b"k=v"),
        (b"\\x41\\101\\0101|", b"Ae\x41|"),  # \x hex, other digits in C's base 0 (decimal, 0-prefixed octal)
        (b"\\xff|", b"ff|"),  # \\x needs a decimal digit after it, else the letters stay
        (b"a\\x00|b", b"a"),  # a literal ends at NUL, as a C string does
        (b"%%|%S|%K|%R", b"%|1|1|\x00\x00\x00\x01"),
        (b"%t/%p/%o/%T", b"t/3/9/1700000000000"),
        (b"%h", b"a=1,b=NULL,c="),
        (b"\\q\\", b"q\\"),
    ],
)
def test_format_rendering(fmt: bytes, want: bytes) -> None:
    m = Msg("t", 3, 9, 1_700_000_000_000, b"k", b"v", [("a", b"1"), ("b", None), ("c", b"")])
    assert compile_format(parse_format(fmt), null=None)(m) == want


@pytest.mark.parametrize(("fmt", "error"), [(b"%x", "Unsupported formatter: %x"), (b"abc%", "Empty formatter")])
def test_format_errors_are_kcats(fmt: bytes, error: str) -> None:
    with pytest.raises(FormatStringError, match=error):
        parse_format(fmt)


def test_null_and_empty_fields() -> None:
    m = Msg("t", 0, 0, 0, None, b"", None)
    tokens = parse_format(b"[%k][%s][%K][%S]")
    assert compile_format(tokens, null=None)(m) == b"[][][-1][0]"
    assert compile_format(tokens, null=b"NULL")(m) == b"[NULL][NULL][-1][0]"
    # the fast default shapes behave the same
    assert compile_format(parse_format(b"%k:%s\\n"), null=b"NULL")(m) == b"NULL:NULL\n"
    assert compile_format(parse_format(b"%s\\n"), null=None)(m) == b"\n"


def test_json_string_escapes_like_yajl() -> None:
    assert json_string(b'a"b\\c\x08\x0c\n\r\t\x01\x1f\x7f\xc3\xa9/') == (
        b'"a\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001F\x7f\xc3\xa9/"'
    )


def test_json_envelope_order_and_nulls() -> None:
    m = Msg("t", 1, 2, 3, None, b"p", [("h", None), ("i", b"x")])
    out = render_json(m, broker=1)
    assert out == (
        b'{"topic":"t","partition":1,"offset":2,"tstype":"create","ts":3,"broker":1,'
        b'"headers":["h",null,"i","x"],"key":null,"payload":"p"}'
    )
    assert json.loads(out)["headers"] == ["h", None, "i", "x"]
    assert b"headers" not in render_json(Msg("t", 1, 2, 3, b"k", None, None), broker=1)


def test_murmur2_matches_kafkas_own_vectors() -> None:
    """Apache Kafka's UtilsTest.testMurmur2 values (Java ints)."""
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    }
    for key, java in vectors.items():
        assert murmur2(key) == java & 0xFFFFFFFF


def test_partitioners() -> None:
    assert murmur2_partition(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
    assert crc32_partition(b"foobar", 7) == 0x9EF61F95 % 7
    with pytest.raises(ValueError, match="at least one partition"):
        murmur2_partition(b"x", 0)
