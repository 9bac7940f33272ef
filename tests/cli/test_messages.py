"""What the command line says when the user gets something wrong: one line that names the thing, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

# The installed console script, not `python -m` (which puts the current directory on sys.path by itself).
LOOSELY = str(Path(sys.executable).parent / "loosely")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOSELY, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding a view module, as a user's project would."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "views.py").write_text(
        "from loosely.views import View\nview = View('latest', 1, ('t',), lambda r: None)\n"
    )
    return tmp_path


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("loosely ") and r.stdout.split()[1][0].isdigit()


def test_main_called_in_process_leaves_hypothesis_importable(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # main() hides hypothesis from kio while a command runs (start-up time); a process that goes on afterwards, a
    # test run that has not imported it yet, must still be able to import it (pytest's hypothesis plugin does, at
    # the end of the run)
    from loosely.cli.main import main

    monkeypatch.delitem(sys.modules, "hypothesis", raising=False)
    with pytest.raises(SystemExit) as done:  # argparse's --version exits
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("loosely ")
    import hypothesis

    assert hypothesis.__name__ == "hypothesis"


def test_an_unknown_option_shows_the_subcommand_s_usage() -> None:
    r = run("broker", "--data-dir", "x", "--port", "1")
    assert r.returncode == 2
    assert "loosely broker: error: unrecognized arguments: --port 1" in r.stderr
    assert "--data-dir" in r.stderr  # the broker's usage, not the list of subcommands


def test_a_view_module_is_found_in_the_current_directory(project: Path) -> None:
    # reaches the sink: the module was imported, so the error is about the missing directory
    r = run("views", "run", "app.views:view", "--sink", "sqlite:///no-such-dir/v.db", "-b", "127.0.0.1:1",
            cwd=project)
    assert r.returncode == 1
    assert one_line(r) == ("loosely views: cannot open the SQLite database '/no-such-dir/v.db': "
                           "unable to open database file")


def test_a_missing_attribute_names_module_and_attribute(project: Path) -> None:
    r = run("views", "run", "app.views:nosuch", "--sink", "sqlite:///v.db", cwd=project)
    assert r.returncode == 1
    line = one_line(r)
    assert line.startswith("loosely views: module 'app.views' (") and line.endswith("has no attribute 'nosuch'")


def test_dead_letter_without_a_topic_names_the_option(project: Path) -> None:
    r = run("views", "run", "app.views:view", "--on-poison", "dead-letter", "--sink", "sqlite:///v.db", cwd=project)
    assert r.returncode == 1
    assert one_line(r) == "loosely views: --on-poison dead-letter needs --dead-letter-topic TOPIC"


def test_demo_names_the_address_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("demo", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--http", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in one_line(r)


ARGPARSE_COMMANDS = [
    "broker", "top", "log verify", "mirror", "topics list", "topics create", "topics describe", "topics alter",
    "topics delete", "topics add-partitions", "groups list", "groups describe", "groups reset", "groups delete",
    "views run", "views rebuild", "views status", "views switch", "views drop", "views get", "views serve",
    "hollow dump", "hollow diff", "hollow history", "demo",
]


@pytest.mark.parametrize("command", ARGPARSE_COMMANDS)
def test_every_subcommand_refuses_a_bad_argument_with_its_usage(command: str) -> None:
    r = run(*command.split(), "--no-such-option")
    assert r.returncode == 2, (command, r.stderr)
    assert "Traceback" not in r.stderr
    assert f"loosely {command}" in r.stderr, r.stderr
    # argparse's usage, except `log`, which answers in one line by design (its output is for scripts)
    assert ("usage:" in r.stderr) != command.startswith("log "), r.stderr


@pytest.mark.parametrize("command", ["kcat", "produce", "consume", "metadata", "query"])
def test_kcat_commands_refuse_a_bad_argument_as_kcat_does(command: str) -> None:
    r = run(command, "--no-such-option")
    assert r.returncode == 1, r.stderr  # kcat's usage(1, ...)
    assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
