#!/usr/bin/env bash
# End to end on the arm64 board: make it (once), start its sshd, convert a small CNN to .tflite and
# .onnx on this host, and `edgekit bench` both over ssh:// with the board's own Python and aarch64
# wheels. Writes OUT/arm_board.json (the records) and OUT/arm_board.html; prints the table.
#
#   scripts/arm_board/run.sh [OUT]          (root; default OUT=arm-board-out; EDGEKIT_BOARD_ROOT)
# Timings under qemu emulation mean nothing; the remote path, the wheels and the records do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-arm-board-out}
root=${EDGEKIT_BOARD_ROOT:-/var/tmp/edgekit-arm-board}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=3

start=$(date +%s)
"$here/board.sh" setup "$root"
echo "[arm-board] board ready after $(( $(date +%s) - start )) s" >&2
spec=$("$here/board.sh" start "$root" | tail -1)
trap '"$here/board.sh" stop "$root"' EXIT

(cd "$here" && edgekit convert --model model:build --input x:1x1x8x8 -t tflite -t onnx -o "$out/artifacts" -q)
edgekit bench "$out/artifacts/model.tflite" "$out/artifacts/model.onnx" --device "$spec" \
  --ssh-config "$root.ssh_config" --runs 20 --warmup 2 --rounds 3 --no-peak \
  --json "$out/arm_board.json" --html "$out/arm_board.html"
echo "[arm-board] done after $(( $(date +%s) - start )) s" >&2
