"""The ``scoresvc`` command as an operator runs it: real processes, relative paths,
one-line errors with exit status 2 for usage and 1 at run time."""

from __future__ import annotations

import importlib.metadata
import json
import re
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import CliServer, run_cli

import scoresvc
from scoresvc.client import ScoreClient
from scoresvc.core.model import InteractionKind

SMALL_DEMO = ("--users", "300", "--events", "3000")
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def one_line_error(done, code: int, *words: str) -> str:
    """``done`` failed with ``code`` and one line on stderr naming ``words``."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "listening" not in done.stdout
    return lines[0]


def files_of(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """A working directory with ``data`` (a demo community) and ``backup`` (its export),
    both made with relative paths."""
    cwd = tmp_path_factory.mktemp("demo")
    server = CliServer("demo", "--port", "0", "--data-dir", "data", *SMALL_DEMO, cwd=cwd)
    try:
        server.wait_serving()
    finally:
        assert server.stop(timeout=60) == 0, server.log()
    (cwd / "demo.log").write_text(server.log())
    done = run_cli("export", "--data-dir", "data", "--out", "backup", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return cwd


def test_demo_with_a_data_dir_writes_a_checkpoint_at_shutdown(demo_data):
    assert list((demo_data / "data" / "checkpoints").glob("checkpoint-*.svck"))


def test_demo_runs_with_seed_accounts_and_says_so(demo_data):
    assert "trust is anchored in 20 seed accounts" in (demo_data / "demo.log").read_text()


def test_serve_without_seeds_says_seeds_are_the_strongest_defence(tmp_path):
    with CliServer("serve", "--port", "0", "--data-dir", "data", cwd=tmp_path) as server:
        server.wait_serving()
        assert server.stop(timeout=60) == 0, server.log()
        log = server.log()
    assert "no seed accounts" in log
    assert "strongest defence against fake accounts" in log


def test_the_readmes_export_and_import_take_relative_paths(demo_data):
    assert json.loads((demo_data / "backup" / "manifest.json").read_text())["sequence"] > 0
    done = run_cli("import", "--data-dir", "other-data", "--input", "backup", cwd=demo_data)
    assert done.returncode == 0, done.stderr
    # Progress is plain when stderr is not a terminal: a line per table, no bars.
    assert "\r" not in done.stderr and "import interactions:" in done.stderr
    server = CliServer("serve", "--port", "0", "--data-dir", "other-data", cwd=demo_data)
    try:
        server.wait_serving()
        with ScoreClient(server.address) as client:
            assert len(client.top_users(5).users) == 5
    finally:
        assert server.stop(timeout=60) == 0


def test_token_and_tls_flags_take_relative_paths(demo_data, tmp_path):
    from test_security import _certificate

    _, _, cert, key = _certificate("localhost")
    (tmp_path / "server.pem").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    done = run_cli("token", "list", "--data-dir", "guarded", cwd=tmp_path)
    assert done.returncode == 0 and "no tokens" in done.stdout, done
    done = run_cli(
        "token", "create", "--data-dir", "guarded", "--name", "ci", "--role", "reader", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "ci\treader" in run_cli("token", "list", "--data-dir", "guarded", cwd=tmp_path).stdout
    server = CliServer(
        "serve",
        "--port",
        "0",
        "--data-dir",
        "guarded",
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
        cwd=tmp_path,
    )
    assert server.stop(timeout=60) == 0, server.log()
    assert (tmp_path / "guarded" / "tokens.json").exists()


def test_batch_and_serve_snapshot_take_relative_paths_quietly(demo_data):
    done = run_cli(
        "batch",
        "--input",
        "backup",
        "--out",
        "scores.parquet",
        "--local-workers",
        "1",
        cwd=demo_data,
    )
    assert done.returncode == 0, done.stderr
    assert (demo_data / "scores.parquet").exists()
    # Dask's own INFO lines and shutdown noise stay out of the operator's way.
    assert "distributed." not in done.stderr and "Traceback" not in done.stderr, done.stderr
    server = CliServer(
        "serve",
        "--port",
        "0",
        "--data-dir",
        "from-batch",
        "--snapshot",
        "scores.parquet",
        cwd=demo_data,
    )
    try:
        server.wait_serving()
        with ScoreClient(server.address) as client:
            assert len(client.top_users(3).users) == 3
    finally:
        assert server.stop(timeout=60) == 0


def test_import_refuses_a_data_directory_holding_events_and_writes_nothing(demo_data):
    refused = run_cli("import", "--data-dir", "data", "--input", "backup", cwd=demo_data)
    before = files_of(demo_data / "data")
    line = one_line_error(refused, 1, str(demo_data / "data"), "checkpoint")
    assert "import only into a new data directory" in line
    assert files_of(demo_data / "data") == before


def test_a_failed_import_leaves_no_directory_behind(tmp_path):
    done = run_cli("import", "--data-dir", "new/data", "--input", "missing", cwd=tmp_path)
    one_line_error(done, 1, "missing")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "code", "named"),
    [
        (["serve", "--durability", "bogus"], {}, 2, "--durability"),
        (["serve", "--port", "-1"], {}, 2, "--port"),
        (["serve", "--port", "99999"], {}, 2, "--port"),
        (["serve", "--log-format", "xml"], {}, 2, "--log-format"),
        (["serve", "--log-level", "LOUD"], {}, 2, "--log-level"),
        (["demo", "--time-step", "0"], {}, 2, "--time-step"),
        (["serve"], {"SCORESVC_PORT": "abc"}, 2, "SCORESVC_PORT"),
        (["demo"], {"SCORESVC_DURABILITY": "bogus"}, 2, "SCORESVC_DURABILITY"),
        (["batch", "--as-of", "yesterday"], {}, 2, "--as-of"),
        (["token", "create"], {}, 2, "--name"),
        (["export", "--data-dir", "missing"], {}, 1, "missing"),
    ],
)
def test_ordinary_mistakes_are_one_line_naming_the_flag(tmp_path, args, env, code, named):
    one_line_error(run_cli(*args, cwd=tmp_path, env=env), code, named)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_environment_variable_leaves_help_and_other_commands_alone(tmp_path):
    env = {"SCORESVC_PORT": "abc"}
    for args in (["--help"], ["serve", "--help"], ["token", "list", "--data-dir", "t"]):
        done = run_cli(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_help_lists_choices_and_no_empty_defaults():
    out = run_cli("serve", "--help").stdout
    assert "default )" not in out
    assert "one of full, normal" in out and "one of text, json" in out
    assert "one of DEBUG, INFO" in out
    assert "distributed extra" in run_cli("batch", "--help").stdout


def test_version_comes_from_the_package_metadata():
    installed = importlib.metadata.version("scoresvc")
    assert scoresvc.__version__ == installed
    assert run_cli("--version").stdout.strip() == f"scoresvc {installed}"


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        done = run_cli("serve", "--port", port, "--data-dir", "", cwd=tmp_path)
    one_line_error(done, 1, "--port", port)


def test_a_locked_data_directory_is_one_line_for_serve_and_import(demo_data, tmp_path):
    server = CliServer("serve", "--port", "0", "--data-dir", "busy", cwd=tmp_path)
    try:
        again = run_cli("serve", "--port", "0", "--data-dir", "busy", cwd=tmp_path)
        one_line_error(again, 1, "in use")
        imported = run_cli(
            "import", "--data-dir", "busy", "--input", str(demo_data / "backup"), cwd=tmp_path
        )
        one_line_error(imported, 1, "in use")
    finally:
        assert server.stop(timeout=60) == 0


def test_listening_is_printed_once_serving_and_as_json_with_the_log(tmp_path):
    server = CliServer(
        "serve", "--port", "0", "--data-dir", "d", "--log-format", "json", cwd=tmp_path
    )
    try:
        announced = json.loads(server.line)
        assert announced["message"] == f"listening on {server.address}"
        assert RFC3339_MS.match(announced["time"]), announced
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with ScoreClient(server.address) as client:
            client.record_interactions([("ana", "bo", InteractionKind.LIKE, None)])
    finally:
        assert server.stop(timeout=60) == 0
    for line in server.log().splitlines():
        assert RFC3339_MS.match(json.loads(line)["time"]), line


def test_a_failed_start_up_prints_no_listening_line(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "scoresvc.db").write_bytes(b"not a database" * 100)
    done = run_cli("serve", "--port", "0", "--data-dir", "broken", cwd=tmp_path)
    one_line_error(done, 1, "broken")


def test_parquet_the_default_export_format_comes_with_the_plain_install():
    requires = importlib.metadata.requires("scoresvc") or []
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("pyarrow") for r in core), core


def test_import_into_an_unreadable_data_directory_is_one_line(demo_data, tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "scoresvc.db").write_bytes(b"not a database" * 100)
    done = run_cli(
        "import", "--data-dir", "broken", "--input", str(demo_data / "backup"), cwd=tmp_path
    )
    one_line_error(done, 1, "broken")
