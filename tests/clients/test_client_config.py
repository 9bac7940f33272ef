"""Kafka client settings as users bring them: Java properties files, Java's names, and secrets kept out of sight.

Unit tests of loosely.clients.client_config (pure) and of how the command line resolves --client-config / -X
before a subcommand runs (no cluster needed: a bad file is refused before any connection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loosely.cli import kcat
from loosely.cli.kcat import _native as kcat_native
from loosely.cli.main import main
from loosely.clients.client_config import (
    PROPERTIES_BYTES_MAX,
    REDACTED,
    ClientConfigError,
    client_config,
    is_secret,
    is_secured,
    load_properties,
    parse_properties,
    parse_settings,
    redacted,
    translate,
)

SCRAM_JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" '
              'password="pa\\"ss word";')


# --- Java properties files --------------------------------------------------------------------------------------


def test_separators_comments_and_blank_lines() -> None:
    text = "# comment\n! also a comment\n\n  a=1\nb : 2\nc 3\nd=\ne\n f = x = y \n"
    assert parse_properties(text) == {"a": "1", "b": "2", "c": "3", "d": "", "e": "", "f": "x = y "}


def test_continuation_lines_join_without_their_leading_blanks() -> None:
    text = "sasl.jaas.config=Module required \\\n    username=\"u\" \\\n    password=\"p\";\nnext=1\n"
    assert parse_properties(text) == {"sasl.jaas.config": 'Module required username="u" password="p";', "next": "1"}


def test_an_even_number_of_trailing_backslashes_does_not_continue() -> None:
    assert parse_properties("a=x\\\\\nb=2\n") == {"a": "x\\", "b": "2"}


def test_escapes_in_names_and_values() -> None:
    assert parse_properties("we\\=ird\\:name=a\\tb\\u0041\\q\n") == {"we=ird:name": "a\tbAq"}


def test_the_last_setting_of_a_name_wins() -> None:
    assert parse_properties("a=1\na=2\n") == {"a": "2"}


def test_a_setting_without_a_name_or_a_bad_escape_is_refused_without_the_line() -> None:
    with pytest.raises(ClientConfigError, match=r"^f\.properties: a setting without a name") as e:
        parse_properties("a=1\n\n=secret-value\n", "f.properties")
    assert "secret-value" not in str(e.value)
    with pytest.raises(ClientConfigError, match=r"^f\.properties: sasl\.password: malformed \\uXXXX escape") as e:
        parse_properties("sasl.password=secret\\u12\n", "f.properties")
    assert "secret" not in str(e.value)


def test_a_file_that_cannot_be_read_or_is_too_large(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match=r"cannot read client config .*missing"):
        load_properties(tmp_path / "missing")
    big = tmp_path / "big"
    big.write_bytes(b"#" * (PROPERTIES_BYTES_MAX + 1))
    with pytest.raises(ClientConfigError, match="over 1048576 bytes"):
        load_properties(big)
    at_limit = tmp_path / "at-limit"
    at_limit.write_bytes(b"a=1\n" + b"#" * (PROPERTIES_BYTES_MAX - 4))
    assert load_properties(at_limit) == {"a": "1"}


def test_a_latin1_file_is_read_as_java_reads_it(tmp_path: Path) -> None:
    f = tmp_path / "c.properties"
    f.write_bytes("sasl.username=j\xf6rg\n".encode("latin-1"))
    assert load_properties(f) == {"sasl.username": "j\xf6rg"}


# --- -X items ---------------------------------------------------------------------------------------------------


def test_settings_items() -> None:
    assert parse_settings(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ClientConfigError, match=r"^-X expects NAME=VALUE, got 'oops'$"):
        parse_settings(["oops"])


def test_an_item_without_equals_that_names_a_secret_is_not_echoed() -> None:
    with pytest.raises(ClientConfigError) as e:
        parse_settings(["sasl.password:hunter2"], "--target-config")
    assert "hunter2" not in str(e.value)
    assert str(e.value).startswith("--target-config expects NAME=VALUE")


# --- Java names -> librdkafka's ---------------------------------------------------------------------------------


def test_sasl_mechanism_and_scram_jaas() -> None:
    got = translate({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                     "sasl.jaas.config": SCRAM_JAAS})
    assert got == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice",
                   "sasl.password": 'pa"ss word'}


def test_plain_jaas_with_unquoted_values_and_no_semicolon() -> None:
    got = translate({"sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
                                         "username=bob password=b0b"})
    assert got == {"sasl.username": "bob", "sasl.password": "b0b"}


def test_unsecured_oauthbearer_jaas() -> None:
    got = translate({"sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
                                         'required unsecuredLoginStringClaim_sub="carol";'})
    assert got == {"sasl.oauthbearer.config": "principal=carol", "enable.sasl.oauthbearer.unsecure.jwt": "true"}


@pytest.mark.parametrize(("jaas", "reason"), [
    ('com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true principal="x@Y";', "Krb5LoginModule does"),
    ('org.apache.kafka.common.security.plain.PlainLoginModule required username="u";', "needs username"),
    ("not a jaas line", "expected '<LoginModule class> required"),
    ('org.apache.kafka.common.security.plain.PlainLoginModule required password="sekrit" "dangling";',
     "cannot read the options"),
])
def test_jaas_that_does_not_translate_is_refused_without_its_secrets(jaas: str, reason: str) -> None:
    with pytest.raises(ClientConfigError, match=reason) as e:
        translate({"sasl.jaas.config": jaas})
    assert "sekrit" not in str(e.value)


def test_pem_truststore_and_keystore() -> None:
    got = translate({"ssl.truststore.type": "pem", "ssl.truststore.location": "/ca.pem",
                     "ssl.truststore.password": "unused", "ssl.keystore.type": "PEM",
                     "ssl.keystore.location": "/client.pem", "ssl.keystore.password": "unused",
                     "ssl.key.password": "k"})
    assert got == {"ssl.ca.location": "/ca.pem", "ssl.certificate.location": "/client.pem",
                   "ssl.key.location": "/client.pem", "ssl.key.password": "k"}


def test_inline_pem_stores() -> None:
    got = translate({"ssl.truststore.certificates": "-----BEGIN CERTIFICATE-----",
                     "ssl.keystore.certificate.chain": "CHAIN", "ssl.keystore.key": "KEY"})
    assert got == {"ssl.ca.pem": "-----BEGIN CERTIFICATE-----", "ssl.certificate.pem": "CHAIN", "ssl.key.pem": "KEY"}


def test_pkcs12_keystore_is_librdkafkas_own_setting() -> None:
    got = translate({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": "/c.p12", "ssl.keystore.password": "p"})
    assert got == {"ssl.keystore.location": "/c.p12", "ssl.keystore.password": "p"}
    assert translate({"ssl.keystore.location": "/c.p12"}) == {"ssl.keystore.location": "/c.p12"}


@pytest.mark.parametrize("config", [
    {"ssl.truststore.location": "/trust.jks"},  # no type: Java reads it as JKS
    {"ssl.truststore.location": "/trust.jks", "ssl.truststore.type": "JKS"},
    {"ssl.truststore.location": "/trust.p12", "ssl.truststore.type": "PKCS12"},
    {"ssl.keystore.location": "/key.jks", "ssl.keystore.password": "sekrit"},
    {"ssl.keystore.location": "/key.bin", "ssl.keystore.type": "JKS"},
])
def test_jks_is_refused_with_a_line_saying_to_use_pem(config: dict[str, str]) -> None:
    with pytest.raises(ClientConfigError, match="librdkafka cannot read JKS, convert the store to PEM") as e:
        translate(config)
    assert "sekrit" not in str(e.value)


def test_an_empty_endpoint_identification_algorithm_is_librdkafkas_none() -> None:
    assert translate({"ssl.endpoint.identification.algorithm": ""}) == {"ssl.endpoint.identification.algorithm": "none"}
    assert translate({"ssl.endpoint.identification.algorithm": "https"}) == {
        "ssl.endpoint.identification.algorithm": "https"}


def test_librdkafka_names_pass_through_and_win_over_javas() -> None:
    got = translate({"sasl.mechanisms": "PLAIN", "sasl.mechanism": "SCRAM-SHA-256", "ssl.ca.location": "/a",
                     "linger.ms": "5"})
    assert got == {"sasl.mechanisms": "PLAIN", "ssl.ca.location": "/a", "linger.ms": "5"}


def test_files_in_order_then_items(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=a\n")
    two.write_text("sasl.username=b\n")
    got = client_config([one, two], ["sasl.mechanism=SCRAM-SHA-256"])
    assert got == {"sasl.mechanisms": "SCRAM-SHA-256", "security.protocol": "SASL_SSL", "sasl.username": "b"}


# --- secrets and the native paths -------------------------------------------------------------------------------


def test_secrets_are_redacted() -> None:
    config = {"sasl.username": "u", "sasl.password": "p", "sasl.jaas.config": "j", "ssl.key.pem": "k",
              "ssl.keystore.password": "s", "sasl.oauthbearer.client.secret": "c", "bootstrap.servers": "h:1"}
    assert redacted(config) == {"sasl.username": "u", "sasl.password": REDACTED, "sasl.jaas.config": REDACTED,
                                "ssl.key.pem": REDACTED, "ssl.keystore.password": REDACTED,
                                "sasl.oauthbearer.client.secret": REDACTED, "bootstrap.servers": "h:1"}
    assert not is_secret("sasl.username")


def test_is_secured() -> None:
    assert not is_secured({})
    assert not is_secured({"security.protocol": "PLAINTEXT", "linger.ms": "1"})
    assert is_secured({"security.protocol": "ssl"})
    assert is_secured({"security.protocol": "SASL_PLAINTEXT"})
    assert is_secured({"ssl.ca.location": "/ca.pem"})


def test_kcat_client_config_translates_and_leaves_the_native_path(tmp_path: Path) -> None:
    f = tmp_path / "client.properties"
    jaas = SCRAM_JAAS.replace("\\", "\\\\")  # a backslash in a properties file is written twice
    f.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.jaas.config={jaas}\n")
    conf = kcat.parse_args(["-C", "-b", "127.0.0.1:1", "-t", "t", "--client-config", str(f), "-X", "sasl.username=x"])
    assert conf.rk == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256",
                       "sasl.username": "x", "sasl.password": 'pa"ss word'}
    out = tmp_path / "out"
    with out.open("wb") as o:
        assert kcat_native.try_consumer(conf, o) is None  # plain TCP cannot do SASL: librdkafka's path runs
    conf = kcat.parse_args(["-P", "-b", "127.0.0.1:1", "-t", "t", "--client-config", str(f)])
    assert kcat_native.try_producer(conf) is None


def test_kcat_client_config_errors_are_kcat_fatal(tmp_path: Path) -> None:
    with pytest.raises(kcat.Fatal, match="cannot read client config"):
        kcat.parse_args(["-C", "-b", "h:1", "-t", "t", "--client-config", str(tmp_path / "missing")])


# --- the command line -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["topics", "list", "-b", "127.0.0.1:1"],
    ["groups", "list", "-b", "127.0.0.1:1"],
    ["views", "status", "--sink", "sqlite:///x.db"],
    ["top", "--metrics", "127.0.0.1:1", "--once"],
    ["mirror", "--source", "h:1", "--source-alias", "a", "--target", "h:2", "--target-alias", "b"],
])
def test_a_bad_client_config_is_one_line_and_exit_2_before_any_connection(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.properties"
    bad.write_text("ssl.truststore.location=/etc/trust.jks\nssl.truststore.password=sekrit\n")
    flag = "--target-client-config" if argv[0] == "mirror" else "--client-config"
    assert main([*argv, flag, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "convert the store to PEM" in err and "sekrit" not in err
    assert err.startswith(f"loosely {argv[0]}: ssl.truststore.location: ")


def test_docstring_examples() -> None:
    import doctest

    import loosely.clients.client_config as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted >= 4


def test_kcat_dump_redacts_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    assert kcat.main(["-X", "dump", "-b", "h:1", "-X", "sasl.password=hunter2", "-X", "sasl.username=u"]) == 0
    out = capsys.readouterr().out
    assert "sasl.password = [redacted]\n" in out and "sasl.username = u\n" in out and "hunter2" not in out
