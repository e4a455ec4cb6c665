"""A real arm64 Linux board on this machine (scripts/arm_board/): a Debian userland under
qemu-user with its own OpenSSH, Python and the aarch64 wheels of ai-edge-litert and onnxruntime;
`edgekit bench --device ssh://...` measures a .tflite and a .onnx on it end to end.

Collected only where the tools are (EDGEKIT_ARM_BOARD=1, set by .ci/run after installing
debootstrap, qemu-user-static and binfmt-support as root): the board costs minutes under emulation.
Timings mean nothing here; the remote path, the ARM wheels and the records do."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_on_an_emulated_arm64_board(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts/arm_board/run.sh"), str(tmp_path)], capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((tmp_path / "arm_board.json").read_text())["results"]
    assert [r["artifact"]["name"] for r in records] == ["model.tflite", "model.onnx"]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["device"]["kind"] == "ssh" and record["device"]["id"].startswith("ssh://root@127.0.0.1:")
        # measured by the board's own Python on aarch64, not by this x86 host
        assert record["device"]["os"].endswith("aarch64-with-glibc2.36") and record["device"]["model"] == "aarch64"
        assert record["rounds"]["count"] == 3 and record["rounds"]["ci_low_ms"] is not None
        assert record["memory"]["definition"] == "model-share" and record["memory"]["model_rss_bytes"] > 0
        assert record["device_state"]["os_build"].startswith("Debian GNU/Linux 12 (bookworm)")
    assert records[0]["runtime"]["name"] == "ai-edge-litert" and records[1]["runtime"]["name"] == "onnxruntime"
    assert "p50 95% CI" in done.stdout and "model share" in done.stdout
