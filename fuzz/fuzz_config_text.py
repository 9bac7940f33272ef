"""Invariant: the sans-IO readers of broker configuration text (Java properties, listeners, the protocol map,
ssl.principal.mapping.rules) return a value or raise ValueError, whatever text they are given; rules that parse
map a DN to a name or raise ValueError (NoMatchingRuleError)."""

import sys

import atheris

with atheris.instrument_imports(include=["loosely"]):
    from loosely.broker._listening import parse_endpoints, parse_protocol_map
    from loosely.protocol.properties import parse_properties
    from loosely.tls.principal import map_principal, parse_rules


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 3)
    text = fdp.ConsumeUnicodeNoSurrogates(256)
    try:
        if which == 0:
            out = parse_properties(text)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())
        elif which == 1:
            for name, host, port in parse_endpoints(text):
                assert name and 0 <= port <= 65535 and isinstance(host, str)
        elif which == 2:
            parse_protocol_map(text)
        else:
            rules = parse_rules(text)
            name = map_principal(rules, fdp.ConsumeUnicodeNoSurrogates(32))
            assert isinstance(name, str)
    except ValueError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
