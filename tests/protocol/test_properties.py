"""Java properties syntax (server.properties) read as java.util.Properties.load reads it."""

from __future__ import annotations

import pytest

from loosely.protocol.properties import PropertiesError, parse_properties

SERVER_PROPERTIES = """\
# A Kafka broker's security section, copied over
listeners=PLAINTEXT://127.0.0.1:9092,\\
          SSL://127.0.0.1:9093
! an old-style comment
listener.security.protocol.map : PLAINTEXT:PLAINTEXT,SSL:SSL
ssl.keystore.location   /etc/kafka/broker.pem
   ssl.client.auth=required
path=C:\\\\kafka\\\\data
tab=a\\tb
unicode=caf\\u00e9
key\\ with\\ spaces=v
trailing=value {TRAILING}
empty=
""".replace("{TRAILING}", "  ")  # trailing blanks are part of the value (kept out of the source by this replace)


def test_a_server_properties_file() -> None:
    assert parse_properties(SERVER_PROPERTIES) == {
        "listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL",
        "ssl.keystore.location": "/etc/kafka/broker.pem",
        "ssl.client.auth": "required",
        "path": "C:\\kafka\\data",
        "tab": "a\tb",
        "unicode": "café",
        "key with spaces": "v",
        "trailing": "value   ",
        "empty": "",
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending(newline: str) -> None:
    text = SERVER_PROPERTIES.replace("\n", newline)
    assert parse_properties(text) == parse_properties(SERVER_PROPERTIES)


def test_a_later_key_wins_and_an_even_number_of_backslashes_does_not_continue() -> None:
    assert parse_properties("a=1\na=2\nb=x\\\\\nc=3") == {"a": "2", "b": "x\\", "c": "3"}


def test_a_continuation_at_the_end_of_the_text_ends_the_line() -> None:
    assert parse_properties("a=1\\") == {"a": "1"}


def test_a_malformed_unicode_escape_is_an_error() -> None:
    with pytest.raises(PropertiesError, match="uXXXX"):
        parse_properties("a=\\u12")


def test_an_error_names_the_setting_never_its_value() -> None:
    """A server.properties line may hold a password: the error says where, not what."""
    with pytest.raises(PropertiesError) as e:
        parse_properties("ssl.key.password=s3cret\\u12zz")
    assert "ssl.key.password" in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(PropertiesError, match="logical line 2") as e:
        parse_properties("a=1\nb\\uzz=s3cret")
    assert "s3cret" not in str(e.value)


def _escape(text: str, *, key: bool) -> str:
    """What java.util.Properties.store writes (every character it must escape, escaped)."""
    out = []
    for i, c in enumerate(text):
        if c in "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c == " " and (key or i == 0):
            out.append("\\ ")
        elif c in "=:#!" and (key or i == 0):
            out.append("\\" + c)
        elif not c.isprintable() or ord(c) > 0xFFFF:
            out.append("".join(f"\\u{u:04x}" for u in _utf16(c)))
        else:
            out.append(c)
    return "".join(out)


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def test_what_java_writes_reads_back() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    chars = st.characters(blacklist_categories=("Cs",), max_codepoint=0xFFFF)

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(chars, min_size=1, max_size=12), st.text(chars, max_size=20), max_size=6))
    def round_trip(props: dict[str, str]) -> None:
        text = "# stored\n" + "".join(f"{_escape(k, key=True)}={_escape(v, key=False)}\n" for k, v in props.items())
        assert parse_properties(text) == props

    round_trip()
