#!/usr/bin/env bash
# A real arm64 Linux board on this x86 machine: a Debian userland made by debootstrap, run through
# qemu-user-static (binfmt_misc), with its own OpenSSH on 127.0.0.1 and its own Python holding the
# aarch64 wheels of ai-edge-litert and onnxruntime from PyPI. `edgekit bench --device ssh://...`
# then measures on it exactly as on a Raspberry Pi: ssh/scp, the board's python3, ARM wheels.
# Timings under emulation mean nothing; the remote path, the wheels and the record are what count.
#
#   scripts/arm_board/board.sh setup [ROOT]        # once: packages, binfmt, debootstrap, venv (~minutes)
#   scripts/arm_board/board.sh start [ROOT] [PORT] # sshd on 127.0.0.1:PORT; prints the device string
#   scripts/arm_board/board.sh stop  [ROOT]
# Needs root (debootstrap, chroot, mount). Default ROOT: /var/tmp/edgekit-arm-board.
set -euo pipefail

ROOT_DEFAULT=/var/tmp/edgekit-arm-board
SUITE=${EDGEKIT_BOARD_SUITE:-bookworm}           # Python 3.11: ai-edge-litert and onnxruntime ship cp311 aarch64 wheels
MIRROR=${EDGEKIT_BOARD_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/edgekit-board                          # the board's Python environment (device string ?python=)
# the board installs what a user would: the newest wheels of the runtimes edgekit's host extras pin
BOARD_PIP=("numpy" "ai-edge-litert" "onnxruntime")

log() { printf '[arm-board] %s\n' "$*" >&2; }

# Run a program on the board with a clean environment: this host's variables (REQUESTS_CA_BUNDLE,
# PIP_FIND_LINKS, ...) name host paths that mean something else, or nothing, inside the board.
board() { local root=$1; shift; chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

host_tools() {
  local need=()
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null || need+=(binfmt-support)
  command -v ssh >/dev/null || need+=(openssh-client)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || { log "binfmt_misc has no enabled qemu-aarch64 entry"; exit 1; }
}

mounts() {  # what sshd and Python need inside the chroot
  local root=$1
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/sys" || mount -t sysfs sysfs "$root/sys"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
  mountpoint -q "$root/dev/pts" || mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666 || true
  # The board shares this x86 host's /proc, and qemu-user 7.2 does not translate /proc/cpuinfo:
  # onnxruntime's CPU probe (pytorch/cpuinfo) segfaults on x86 text. Give it an arm64 one
  # (Neoverse N1 features, this host's core count), as a real board would show.
  if ! grep -q '^CPU implementer' "$root/proc/cpuinfo" 2>/dev/null; then
    : >"$root.cpuinfo"
    for i in $(seq 0 $(($(nproc) - 1))); do
      printf 'processor\t: %s\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" >>"$root.cpuinfo"
    done
    mount --bind "$root.cpuinfo" "$root/proc/cpuinfo"
  fi
}

unmounts() {  # every mount under the board, deepest first (never rm -rf a board with /dev bound in it)
  local root=$1
  awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
}

setup() {
  local root=${1:-$ROOT_DEFAULT}
  host_tools
  if [ ! -x "$root/usr/bin/python3" ]; then
    log "debootstrap --arch arm64 $SUITE into $root (second stage runs under qemu)"
    mkdir -p "$root"
    debootstrap --arch=arm64 --variant=minbase \
      --include=openssh-server,python3,python3-venv,ca-certificates,procps \
      "$SUITE" "$root" "$MIRROR" >"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  fi
  [ "$(board "$root" uname -m)" = aarch64 ] || { log "the chroot does not run as aarch64"; exit 1; }
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # this machine may reach PyPI through a TLS proxy whose CA only the host trusts
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-certificates.crt"
  mounts "$root"
  if [ ! -x "$root$VENV/bin/python" ] || ! board "$root" "$VENV/bin/python" -c "import numpy, ai_edge_litert, onnxruntime" 2>/dev/null; then
    log "board python: $(board "$root" python3 --version); pip install ${BOARD_PIP[*]} (aarch64 wheels)"
    board "$root" python3 -m venv "$VENV"
    board "$root" PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
      "$VENV/bin/pip" install -q --only-binary=:all: "${BOARD_PIP[@]}"
  fi
  board "$root" "$VENV/bin/python" - <<'PY'
import platform, importlib.metadata as md
print("[arm-board] board:", platform.machine(), "python", platform.python_version(),
      ", ".join(f"{p} {md.version(p)}" for p in ("numpy", "ai-edge-litert", "onnxruntime")))
PY
  # a login for the bench: key-only, like a real board after ssh-copy-id
  mkdir -p "$root/root/.ssh" && chmod 700 "$root/root/.ssh"
  [ -f "$root.key" ] || ssh-keygen -q -t ed25519 -N '' -f "$root.key"
  cp "$root.key.pub" "$root/root/.ssh/authorized_keys" && chmod 600 "$root/root/.ssh/authorized_keys"
  board "$root" ssh-keygen -A >/dev/null
  mkdir -p "$root/run/sshd"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  local root=${1:-$ROOT_DEFAULT} port=${2:-$(free_port)}
  host_tools
  mounts "$root"
  mkdir -p "$root/run/sshd"
  if [ -f "$root.sshd.pid" ] && kill -0 "$(cat "$root.sshd.pid")" 2>/dev/null; then
    port=$(cat "$root.port")
  else
    board "$root" /usr/sbin/sshd -p "$port" -o ListenAddress=127.0.0.1 -o PasswordAuthentication=no \
      -o PermitRootLogin=prohibit-password -o UseDNS=no -o PidFile=/run/sshd-edgekit.pid
    for _ in $(seq 1 120); do [ -s "$root/run/sshd-edgekit.pid" ] && break; sleep 0.5; done
    cp "$root/run/sshd-edgekit.pid" "$root.sshd.pid"
    echo "$port" >"$root.port"
  fi
  cat >"$root.ssh_config" <<CFG
Host 127.0.0.1
  User root
  IdentityFile $root.key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CFG
  log "sshd (aarch64, under qemu) on 127.0.0.1:$port; ssh config $root.ssh_config"
  echo "ssh://root@127.0.0.1:$port?python=$VENV/bin/python"
}

stop() {
  local root=${1:-$ROOT_DEFAULT}
  if [ -f "$root.sshd.pid" ]; then kill "$(cat "$root.sshd.pid")" 2>/dev/null || true; rm -f "$root.sshd.pid"; fi
  unmounts "$root"
}

cmd=${1:-}; shift || true
case "$cmd" in
  setup) setup "$@" ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  *) echo "usage: $0 setup|start|stop [ROOT] [PORT]" >&2; exit 2 ;;
esac
