#!/usr/bin/env bash
# Issue 12's benchmark (docs/benchmarks.md, "How the benchmark runs"): one volume driver, the SDK
# example guest-examples/volume, packaged three ways — a dockerd 20.10 managed plugin (the native
# musl build), the same native bundle under plugd, and the wasm component under plugd — measured
# side by side in one run, the systems interleaved run by run. This script builds, starts a
# private dockerd and plugd and prepares the bundles; plugd-bench does the measuring:
#   compare-enable  create, and enable → usable, of a fresh plugin per packaging (and wasm cold:
#                   a component no cache has), vs dockerd;
#   compare-rtt     VolumeDriver.Get round trips, 1 and 8 clients, on dockerd's plugin socket,
#                   plugd's sockets (native, wasm) and the native plugin's own socket;
#   e2e             `GET /volumes/{name}` on dockerd's API and `docker volume inspect`, per driver;
#   rss             memory per enabled plugin beyond the plugin, plugd vs dockerd's shim;
#   density         N wasm plugins (PLUGD_BENCH_DENSITY, default 500) in a second, fresh plugd.
# Every figure is printed with its median and range over runs, the ratio to dockerd and, where
# issue 12 sets one, the target; nothing is asserted.
#
# Run as root: tests/bench/run.sh [REPS]   (default 5; release builds of plugd and plugd-bench)
#              tests/bench/run.sh --quick  (CI: 1 run, few requests, 5 density plugins, debug
#                                           builds; proves the harness works, figures meaningless)
# Guests are always release builds. The AuthZ, Python and log benchmarks are authz.sh, python.sh
# and logs.sh, runs of their own.
set -euo pipefail
if [ "${1:-}" = --quick ]; then
  QUICK=1 REPS=1
else
  QUICK= REPS=${1:-5}
fi
if [ -z "${PLUGD_BENCH_INNER:-}" ]; then
  cd "$(dirname "$(readlink -f "$0")")/../.."
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/plugd/target}"
  # Quick mode reuses CI's debug build of plugd; the real run measures release binaries.
  profile=(--release)
  [ -n "$QUICK" ] && profile=()
  cargo build "${profile[@]}" -p plugd -p plugd-bench
  cargo build "${profile[@]}" -p plugd-init --target x86_64-unknown-linux-musl
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target wasm32-wasip2 \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-volume
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target x86_64-unknown-linux-musl \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-volume-native
  export PLUGD_BENCH_INNER=1 REPO="$PWD"
  exec unshare -m --propagation private "$0" "$@"
fi

T=$CARGO_TARGET_DIR
if [ -n "$QUICK" ]; then
  PROFILE=debug REQUESTS=200 E2E_REQUESTS=20 CLI_RUNS=1 RSS_COUNT=2 DENSITY=5
else
  PROFILE=release REQUESTS=2000 E2E_REQUESTS=500 CLI_RUNS=3 RSS_COUNT=5 DENSITY=${PLUGD_BENCH_DENSITY:-500}
fi
PLUGD=$T/$PROFILE/plugd
BENCH=$T/$PROFILE/plugd-bench
# Hundreds of plugins: each holds a listening socket, its views and pins (the hard limit may be
# fixed by the machine's container: then up to it).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
W=$(mktemp -d /tmp/pb-XXXXXX)
mkdir -p /run/docker/plugins /run/containerd
mount -t tmpfs tmpfs /run/docker/plugins
mount -t tmpfs tmpfs /run/containerd
pids=()
# Every process below a daemon (containerd, plugd's native plugins), by pid.
descendants() {
  local p c
  for p in "$@"; do
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
      echo "$c"
      descendants "$c"
    done
  done
}
cleanup() {
  local rc=$? left=() pid
  trap - EXIT
  set +e
  if [ "$rc" -ne 0 ]; then
    for log in "$W"/*.log; do echo "--- tail of $log" >&2; tail -15 "$log" >&2; done
  fi
  left=($(descendants "${pids[@]}"))
  # containerd shims leave dockerd's tree; they are the processes naming this run's scratch dir.
  for pid in $(pgrep -f "$W/"); do [ "$pid" != $$ ] && left+=("$pid"); done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  for pid in "${left[@]}"; do kill -9 "$pid" 2>/dev/null; done
  umount -R /run/docker/plugins /run/containerd 2>/dev/null
  # plugd leaves its volume pins and views mounted across a stop (a restart reuses them): unmount
  # everything under the scratch dir, deepest first, before removing it.
  awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT

up() { curl -sf --unix-socket "$1" http://x/_ping >/dev/null 2>&1; }
wait_up() { # socket log
  for _ in $(seq 600); do up "$1" && return 0; sleep 0.1; done
  echo "daemon on $1 did not start:"; tail -20 "$2"; exit 1
}
echo "{}" >"$W/daemon.json"
dockerd --iptables=false --bridge=none --storage-driver=vfs --config-file "$W/daemon.json" \
  --data-root "$W/d" --exec-root "$W/e" -H "unix://$W/d.sock" --pidfile "$W/d.pid" >"$W/dockerd.log" 2>&1 &
dockerd_pid=$!
pids+=($dockerd_pid)
start_plugd() { # n extra-args...
  local n=$1; shift
  "$PLUGD" daemon --data-root "$W/p$n" --exec-root "$W/pe$n" -H "unix://$W/p$n.sock" \
    --wasm-cache "$W/cache" --log-level warn "$@" >"$W/plugd$n.log" 2>&1 &
  plugd_pid=$!
  pids+=($plugd_pid)
}
start_plugd 1
wait_up "$W/d.sock" "$W/dockerd.log"
wait_up "$W/p1.sock" "$W/plugd1.log"
D() { DOCKER_HOST="unix://$W/d.sock" docker "$@"; }
P() { "$PLUGD" -H "unix://$W/p1.sock" "$@"; }

# The bundles. One native bundle serves both daemons (dockerd 20.10 refuses a second plugin with an
# identical layer: plugd-bench adds rootfs/etc/plugd-bundle naming each plugin it creates, and dn1
# gets its own here).
mkdir -p "$W/wasm/rootfs" "$W/native/rootfs/data" "$W/native/rootfs/run/docker/plugins" "$W/native/rootfs/etc"
cp "$REPO/guest-examples/volume/config.json" "$W/wasm/"
cp "$T/wasm-guests/wasm32-wasip2/release/plugd_example_volume.wasm" "$W/wasm/rootfs/plugin.wasm"
cp "$REPO/guest-examples/volume/config-native.json" "$W/native/config.json"
cp "$T/wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-volume" "$W/native/rootfs/"

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# plugd $PROFILE build, $(dockerd --version); $REPS run(s)${QUICK:+ (QUICK: the harness check of CI, figures not meaningful)}"

"$BENCH" compare-enable --dockerd-api "$W/d.sock" --plugd-api "$W/p1.sock" \
  --native-bundle "$W/native" --wasm-bundle "$W/wasm" --reps "$REPS"

# The plugins the round trips and the end-to-end inspects use, one per packaging.
echo dn1 >"$W/native/rootfs/etc/plugd-bundle"
D plugin create dn1 "$W/native" >/dev/null
D plugin enable dn1 >/dev/null
rm "$W/native/rootfs/etc/plugd-bundle"
P create n1 "$W/native" >/dev/null
P enable n1 >/dev/null
P create w1 "$W/wasm" >/dev/null
P enable w1 >/dev/null
dn1=$(D plugin inspect -f '{{.Id}}' dn1)
n1=$(P inspect -f '{{.Id}}' n1)
"$BENCH" compare-rtt --reps "$REPS" --requests "$REQUESTS" \
  --dockerd "/run/docker/plugins/$dn1/volume.sock" --plugd-native /run/docker/plugins/n1.sock \
  --own "$W/pe1/plugins/$n1/volume.sock" --plugd-wasm /run/docker/plugins/w1.sock
"$BENCH" e2e --api "$W/d.sock" --dockerd-plugin dn1 --plugd-native n1 --plugd-wasm w1 \
  --reps "$REPS" --requests "$E2E_REQUESTS" --cli-runs "$CLI_RUNS"
"$BENCH" rss --plugd-api "$W/p1.sock" --plugd-pid "$plugd_pid" --plugd-exec-root "$W/pe1" \
  --dockerd-api "$W/d.sock" --dockerd-pid "$dockerd_pid" \
  --native-bundle "$W/native" --wasm-bundle "$W/wasm" --count "$RSS_COUNT"

# Density in a second plugd of its own (nothing else enabled in it; its own socket dir), beside the
# first; the compile cache is shared and warm.
mkdir -p "$W/sock2"
start_plugd 2 --plugin-socket-dir "$W/sock2"
wait_up "$W/p2.sock" "$W/plugd2.log"
"$BENCH" density --api "$W/p2.sock" --pid "$plugd_pid" --bundle "$W/wasm" --socket-dir "$W/sock2" \
  --count "$DENSITY"
echo "# done: load $(cut -d' ' -f1-3 /proc/loadavg)"
