#!/usr/bin/env bash
# Issue 9: log throughput (docs/benchmarks.md, "Issue 9: log throughput"). One dockerd and one plugd;
# for each configuration named on the command line, one busybox container runs `seq 1 LINES` with
# that log driver, detached, and the time from `docker run -d` to the end of `docker wait` is taken
# (dockerd marks a container exited only once its logger is closed: with a plugin, after
# StopLogging, which plugd and the SDK answer once every line is handed to the driver). The
# configurations run interleaved, ROUNDS times; the median round gives lines/s. Every run is then
# read back with `docker logs` and counted, and for plugd's drivers the stream counters are shown.
#
# Configurations: `none` (dockerd's --log-driver=none: the fixed cost of a container), `json-file`
# (dockerd's own driver), `native` (plugd's native runtime, the SDK-built example
# guest-examples/log/native), `wasm` (plugd's wasm runtime, the example component).
# `LOGS_VERIFY=0` skips reading every run back (the example driver's ReadLogs re-reads its whole
# file per page of 256 entries, which takes minutes at a million lines; it is not what is timed).
# Release builds. Run as root: tests/bench/logs.sh [LINES] [ROUNDS] [CONFIGURATION...]
#   e.g. tests/bench/logs.sh 200000 3 none json-file native wasm
set -euo pipefail
LINES=${1:-200000}
ROUNDS=${2:-3}
shift $(($# < 2 ? $# : 2))
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(none json-file native)
has() { local c; for c in "${CONFIGS[@]}"; do [ "$c" = "$1" ] && return 0; done; return 1; }
if [ -z "${PLUGD_BENCH_INNER:-}" ]; then
  cd "$(dirname "$(readlink -f "$0")")/../.."
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/plugd/target}"
  cargo build --release -p plugd
  cargo build --release -p plugd-init --target x86_64-unknown-linux-musl
  if has wasm; then
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target wasm32-wasip2 \
      --manifest-path guest-examples/Cargo.toml -p plugd-example-log
  fi
  if has native; then
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target x86_64-unknown-linux-musl \
      --manifest-path guest-examples/Cargo.toml -p plugd-example-log-native
  fi
  export PLUGD_BENCH_INNER=1 REPO="$PWD"
  exec unshare -m --propagation private "$0" "$LINES" "$ROUNDS" "${CONFIGS[@]}"
fi

T=$CARGO_TARGET_DIR
PLUGD=$T/release/plugd
W=$(mktemp -d /tmp/pl-XXXXXX)
# dockerd names a log plugin's FIFOs in /run/docker/logging, whatever its roots: a private tmpfs.
mkdir -p /run/docker/plugins /run/containerd /run/docker/logging
for m in /run/docker/plugins /run/containerd /run/docker/logging; do mount -t tmpfs tmpfs "$m"; done
pids=()
cleanup() {
  for shim in $(pgrep -f "containerd-shim.*$W/" || true); do
    for c in $(pgrep -P "$shim" || true); do kill -9 "$c" 2>/dev/null || true; done
    kill -9 "$shim" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  umount -R /run/docker/plugins /run/containerd /run/docker/logging 2>/dev/null || true
  awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
up() { curl -sf --unix-socket "$1" http://x/_ping >/dev/null 2>&1; }
wait_up() {
  for _ in $(seq 600); do up "$1" && return 0; sleep 0.1; done
  echo "$2 did not start:"; tail -20 "$3"; exit 1
}

"$PLUGD" daemon --data-root "$W/p" --exec-root "$W/pe" -H "unix://$W/p.sock" --wasm-cache "$W/cache" \
  --log-level warn >"$W/plugd.log" 2>&1 &
pids+=($!)
wait_up "$W/p.sock" plugd "$W/plugd.log"
P() { "$PLUGD" -H "unix://$W/p.sock" "$@"; }
if has native; then
  mkdir -p "$W/native/rootfs/run/docker/plugins" "$W/native/rootfs/data"
  cp "$REPO/guest-examples/log/config-native.json" "$W/native/config.json"
  cp "$T/wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-log" "$W/native/rootfs/"
  P create nlog "$W/native" >/dev/null && P enable nlog >/dev/null
fi
if has wasm; then
  mkdir -p "$W/wasm/rootfs"
  cp "$REPO/guest-examples/log/config.json" "$W/wasm/"
  cp "$T/wasm-guests/wasm32-wasip2/release/plugd_example_log.wasm" "$W/wasm/rootfs/plugin.wasm"
  P create wlog "$W/wasm" >/dev/null && P enable wlog >/dev/null
fi

echo "{}" >"$W/d.json"
dockerd --iptables=false --bridge=none --storage-driver=vfs --config-file "$W/d.json" \
  --data-root "$W/d" --exec-root "$W/d-x" -H "unix://$W/d.sock" --pidfile "$W/d.pid" \
  >>"$W/d.log" 2>&1 &
pids+=($!)
wait_up "$W/d.sock" dockerd "$W/d.log"
D() { DOCKER_HOST="unix://$W/d.sock" docker "$@"; }
mkdir -p "$W/bb/bin"
cp /bin/busybox "$W/bb/bin/"
tar -C "$W/bb" -c . | D import - busybox:bench >/dev/null

driver_of() {
  case $1 in
    none | json-file) echo "$1" ;;
    native) echo nlog ;;
    wasm) echo wlog ;;
    *) echo "unknown configuration $1" >&2; exit 1 ;;
  esac
}

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "# $(dockerd --version); seq 1 $LINES in one container per run; $ROUNDS rounds of: ${CONFIGS[*]}"
: >"$W/results"
for r in $(seq "$ROUNDS"); do
  for c in "${CONFIGS[@]}"; do
    drv=$(driver_of "$c")
    start=$(date +%s%N)
    id=$(D run -d --log-driver "$drv" busybox:bench /bin/busybox seq 1 "$LINES")
    D wait "$id" >/dev/null
    end=$(date +%s%N)
    s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    printf 'round %s\t%s\tseconds=%s\n' "$r" "$c" "$s" >>"$W/results"
    got=-
    if [ "$c" != none ] && [ "${LOGS_VERIFY:-1}" = 1 ]; then got=$(D logs "$id" 2>/dev/null | wc -l); fi
    printf 'round %s\t%s\tseconds=%s\tlines_back=%s\n' "$r" "$c" "$s" "$got"
    D rm "$id" >/dev/null
  done
done
for c in "${CONFIGS[@]}"; do
  case $c in native | wasm) echo "# $c streams: $(curl -s --unix-socket "$W/p.sock" "http://x/plugins/$(driver_of "$c")/logstreams" |
    tr -d '\n' | head -c 600)" ;; esac
done
# Per configuration: the median round's seconds and lines/s; then each plugd driver's ratio to
# json-file, raw and with the `none` container's fixed cost taken off both.
awk -F'\t' -v lines="$LINES" '
  { split($3, kv, "="); c = $2; n[c]++; s[c, n[c]] = kv[2]; if (!(c in seen)) { seen[c] = 1; order[++k] = c } }
  function median(c,   a, i, j, t, m) {
    m = n[c]; for (i = 1; i <= m; i++) a[i] = s[c, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((m + 1) / 2)]
  }
  END {
    base = ("none" in seen) ? median("none") : 0
    json = ("json-file" in seen) ? median("json-file") : 0
    for (o = 1; o <= k; o++) {
      c = order[o]; m = median(c)
      printf "logs\t%s\tseconds=%.3f\tlines_s=%.0f", c, m, lines / m
      if (base > 0 && c != "none" && m > base) printf "\tlines_s_net=%.0f", lines / (m - base)
      if (json > 0 && c != "json-file" && c != "none") {
        printf "\tratio_to_json_file=%.2f", json / m
        if (base > 0 && m > base && json > base) printf "\tnet_ratio_to_json_file=%.2f", (json - base) / (m - base)
      }
      printf "\n"
    }
  }' "$W/results"
