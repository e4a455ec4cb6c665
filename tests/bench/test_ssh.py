"""ssh:// devices against a real OpenSSH server on 127.0.0.1 (tests/bench/sshd.py): edgekit's
measuring module is shipped to the "board" and run there with the board's Python."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy
import pytest

from edgekit.bench import run_bench
from tests.bench.sshd import free_port, start_sshd

pytestmark = pytest.mark.slow


def board_python(folder: Path, body: str) -> str:
    """A stand-in for the board's interpreter path: a shell script around this machine's Python."""
    path = folder / "board-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_measure_on_a_board_and_the_host_in_parallel(sshd, board_spec, board_dir, tflite_artifacts):
    records = run_bench([tflite_artifacts["int8"], tflite_artifacts["bare"]], [board_spec, "host"],
                        runs=15, warmup=1, ssh_config=str(sshd.client_config))
    assert [(r["device"]["id"], r["artifact"]["name"], r["status"]) for r in records] == [
        ("ssh://board", "small_cnn_int8.tflite", "ok"), ("ssh://board", "no_manifest.tflite", "ok"),
        ("host", "small_cnn_int8.tflite", "ok"), ("host", "no_manifest.tflite", "ok"),
    ]
    board = records[0]
    assert board["device"]["kind"] == "ssh" and board["timings_ms"]["count"] == 15
    assert board["artifact"]["path"] == os.path.abspath(tflite_artifacts["int8"])  # the user's path, not the board's
    assert board["parity"]["status"] == "passed"  # the manifest travelled with the artifact
    assert board["memory"]["model_rss_bytes"] > 0 and board["compute"]["peak_share"] > 0
    assert records[1]["warnings"][0].startswith("no manifest beside the artifact")
    folder = board_dir
    (bundle,) = (folder / "board").iterdir()  # edgekit's source, unpacked once per version
    assert (bundle / "edgekit" / "bench" / "measure.py").is_file()
    assert (bundle / "edgekit" / "targets" / "tflite" / "runtime.py").is_file()
    assert (folder / "peak.json").is_file()  # the board's own GEMM peak, cached on the board
    assert not list(folder.glob("run-*"))  # this run's scratch folder is gone


def test_a_user_at_host_port_device_string_and_real_data(sshd, tflite_artifacts, board_dir, tmp_path):
    data = tmp_path / "inputs.npz"  # copied to the board with the artifact
    numpy.savez(data, x=numpy.random.default_rng(0).standard_normal((5, 1, 3, 32, 32)).astype(numpy.float32))
    spec = f"{sshd.url_spec}?python={sys.executable}&dir={board_dir}"
    (record,) = run_bench([tflite_artifacts["fp32"]], [spec], runs=5, warmup=0, data=str(data),
                          ssh_config=str(sshd.client_config), peak=False)
    assert record["status"] == "ok", record["error"]
    assert record["settings"]["inputs"] == str(data)
    assert record["device"]["id"] == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    assert record["compute"]["peak_gflops"] is None  # --no-peak


def test_a_board_python_without_numpy(sshd, tflite_artifacts, tmp_path, board_dir):
    python = board_python(tmp_path, f'exec {sys.executable} -S "$@"')  # -S: no site-packages at all
    spec = f"{sshd.alias_spec}?python={python}&dir={board_dir}"
    (record,) = run_bench([tflite_artifacts["fp32"]], [spec], runs=3, ssh_config=str(sshd.client_config), peak=False)
    assert record["status"] == "missing-runner"
    assert record["error"] == f"ssh://board: numpy is not installed for {sys.executable} (pip install numpy)"


def test_a_board_without_the_runtime(sshd, tflite_artifacts, tmp_path, board_dir, capsys):
    site = tmp_path / "site"
    site.mkdir()
    numpy_dir = Path(numpy.__file__).parent
    for name in ("numpy", "numpy.libs"):  # numpy alone, as on a board where only numpy was installed
        if (numpy_dir.parent / name).exists():
            (site / name).symlink_to(numpy_dir.parent / name)
    python = board_python(tmp_path, f'PYTHONPATH={site} exec {sys.executable} -S "$@"')
    spec = f"{sshd.alias_spec}?python={python}&dir={board_dir}"
    records = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"]], [spec], runs=3,
                        ssh_config=str(sshd.client_config), quiet=True, peak=False)
    assert [r["status"] for r in records] == ["missing-runner", "missing-runner"]
    assert records[0]["error"].startswith("ssh://board: a TFLite interpreter (ai-edge-litert) is not installed")
    assert "warning: [ssh://board] small_cnn_int8.tflite: missing-runner: ssh://board: a TFLite interpreter" in capsys.readouterr().err


def test_a_board_that_refuses_the_key(sshd, tflite_artifacts, tmp_path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    config = tmp_path / "ssh_config"
    config.write_text(sshd.client_config.read_text().replace(str(sshd.folder / "client_key"), str(tmp_path / "stranger")))
    records = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"]], [sshd.alias_spec], ssh_config=str(config))
    assert [r["status"] for r in records] == ["unauthorized", "unauthorized"]
    assert "Permission denied (publickey)" in records[0]["error"]
    assert "add your key with `ssh-copy-id`" in records[0]["error"]


def test_a_board_that_is_not_there(tflite_artifacts, sshd):
    port = free_port()  # nothing listens there
    records = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"]], [f"ssh://nobody@127.0.0.1:{port}", "host"],
                        runs=3, ssh_config=str(sshd.client_config), peak=False)
    assert [r["status"] for r in records] == ["unreachable", "unreachable", "ok", "ok"]
    assert records[0]["error"] == (f"ssh://nobody@127.0.0.1:{port}: cannot reach the board while connecting "
                                   f"(ssh: connect to host 127.0.0.1 port {port}: Connection refused)")


def test_a_board_that_disappears_mid_run(tflite_artifacts, tmp_path):
    server = start_sshd(tmp_path / "dying")
    try:
        count = tmp_path / "count"
        # at the second measurement the board drops off the network: its sshd stops listening and
        # the sshd process serving this connection dies (found by walking up from this script)
        python = board_python(tmp_path, (
            f'if [ "$1" = "-m" ]; then echo x >> {count}; fi\n'
            f'if [ "$(wc -l < {count} 2>/dev/null)" = "2" ]; then\n'
            f'  kill {server.process.pid}; pid=$$\n'
            '  while [ "$pid" -gt 1 ]; do\n'
            '    if [ "$(cat /proc/$pid/comm)" = "sshd" ]; then kill -9 $pid; break; fi\n'
            "    pid=$(awk '{print $4}' /proc/$pid/stat)\n"
            '  done\n  sleep 5; exit 1\nfi\n'
            f'exec {sys.executable} "$@"'))
        spec = f"{server.alias_spec}?python={python}&dir={tmp_path / 'b'}"
        records = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"], tflite_artifacts["bare"]], [spec],
                            runs=3, warmup=0, ssh_config=str(server.client_config), peak=False)
    finally:
        server.stop()
    assert [r["status"] for r in records] == ["ok", "unreachable", "unreachable"]
    assert records[1]["error"].startswith("ssh://board: the connection dropped while measuring")
    assert records[2]["error"] == "ssh://board: not measured: the device was lost earlier in this run (unreachable)"


def test_a_hang_on_the_board(board_spec, sshd, tflite_artifacts):
    (stuck, fine) = run_bench([tflite_artifacts["fp32"], tflite_artifacts["int8"]], [board_spec], runs=10**9, timeout=2,
                              ssh_config=str(sshd.client_config), peak=False)
    assert stuck["status"] == "timeout"
    assert stuck["error"] == "ssh://board: small_cnn_fp32.tflite did not finish within 2 s (--timeout); stopped"
    assert fine["status"] == "timeout"  # the next artifact ran (and hit the same limit): nothing stays stuck


def test_a_board_whose_python_stops_answering(sshd, tflite_artifacts, tmp_path, board_dir):
    python = board_python(tmp_path, f'if [ "$1" = "-m" ]; then sleep 9; exit 0; fi\nexec {sys.executable} "$@"')
    spec = f"{sshd.alias_spec}?python={python}&dir={board_dir}"
    (record,) = run_bench([tflite_artifacts["fp32"]], [spec], timeout=1, ssh_config=str(sshd.client_config), peak=False)
    assert record["status"] == "timeout"
    assert "ssh://board: measuring did not finish within 7 s (--timeout)" in record["error"]


def test_devices_lists_and_probes_configured_ssh_hosts(sshd, real_adb, capsys):
    from edgekit.cli import main

    assert main(["devices", "--ssh-config", str(sshd.client_config)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ssh://board"))
    assert row.split()[1:3] == ["ssh", "configured"] and f"{sshd.user}@127.0.0.1:{sshd.port}" in row
    assert main(["devices", "--probe", "--ssh-config", str(sshd.client_config)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ssh://board"))
    assert row.split()[1:3] == ["ssh", "ready"]
