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
