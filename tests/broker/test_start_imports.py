"""What a broker's start imports. loosely imports its message codec (kio) without hypothesis, which kio would
otherwise import to register test strategies: a broker started in a project that has hypothesis installed paid
about 0.9 s and 19 MiB for it; a process that imported hypothesis first still gets kio's strategies. numpy (0.3 s,
16 MiB) waits for the first key index that sorts, searches or loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(code: str) -> object:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_broker_started_and_written_to_imports_neither_hypothesis_pytest_nor_numpy() -> None:
    code = ("import json, sys\n"
            "from confluent_kafka import Producer\n"
            "from loosely.testing import embedded_broker\n"
            "with embedded_broker() as b:\n"
            "    p = Producer({'bootstrap.servers': b.bootstrap_servers})\n"
            "    p.produce('t', b'v', key=b'k')\n"
            "    assert p.flush(30) == 0\n"
            "    print(json.dumps([m for m in ('hypothesis', 'pytest', 'numpy') if m in sys.modules]))")
    assert run(code) == []


def test_hypothesis_imported_afterwards_works_and_imported_before_gets_kio_strategies() -> None:
    after = ("import json, loosely.broker.server\n"
             "from hypothesis import strategies as st\n"
             "print(json.dumps(isinstance(st.integers(0, 3).example(), int)))")
    assert run(after) is True
    before = ("import json, hypothesis\n"
              "import loosely.broker.server\n"
              "from hypothesis import strategies as st\n"
              "from kio.schema.types import TransactionalId\n"
              "print(json.dumps(isinstance(st.from_type(TransactionalId).example(), str)))")
    assert run(before) is True
