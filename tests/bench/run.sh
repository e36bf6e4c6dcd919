#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md, side by side with dockerd on this machine:
#   1. enable -> plugin socket answers, and enable -> API returns: the wasm example under plugd
#      (cold: compile cache emptied first; warm: cached) vs the static native fixture under dockerd;
#   2. POST /VolumeDriver.Get round trips (p50/p99, req/s) with 1 and 8 keep-alive clients, through
#      plugd's socket (wasm) and on dockerd's managed plugin socket (static native);
#   3. plugd's RSS per enabled plugin (wasm, native) vs dockerd's shim per plugin;
#   4. the SDK volume example in both packagings: native under plugd vs the same bundle under
#      dockerd (enable), and Get round trips through plugd's socket (native and wasm builds of the
#      same logic) vs the native plugin's own socket directly (the cost of plugd's forwarding).
# Release builds (plugd, plugd-bench, the static fixture); guests are always release.
# The AuthZ overhead per Engine API call (issue 8) is tests/bench/authz.sh, a run of its own.
# Run as root: tests/bench/run.sh [REPS]. Prints tab-separated figures; asserts nothing.
set -euo pipefail
REPS=${1:-5}
if [ -z "${PLUGD_BENCH_INNER:-}" ]; then
  cd "$(dirname "$(readlink -f "$0")")/../.."
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/plugd/target}"
  cargo build --release -p plugd -p plugd-bench
  cargo build --release -p plugd-static-plugin -p plugd-init --target x86_64-unknown-linux-musl
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target wasm32-wasip2 \
    --manifest-path guest-examples/Cargo.toml
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target x86_64-unknown-linux-musl \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-volume-native
  export PLUGD_BENCH_INNER=1 REPO="$PWD"
  exec unshare -m --propagation private "$0" "$@"
fi

T=$CARGO_TARGET_DIR
PLUGD=$T/release/plugd
BENCH=$T/release/plugd-bench
W=$(mktemp -d /tmp/pb-XXXXXX)
mkdir -p /run/docker/plugins /run/containerd
mount -t tmpfs tmpfs /run/docker/plugins
mount -t tmpfs tmpfs /run/containerd
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  umount -R /run/docker/plugins /run/containerd 2>/dev/null || true
  # plugd leaves its volume pins and views mounted across a stop (a restart reuses them): unmount
  # everything under the scratch dir, deepest first, before removing it.
  awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT

echo "{}" >"$W/daemon.json"
dockerd --iptables=false --bridge=none --storage-driver=vfs --config-file "$W/daemon.json" \
  --data-root "$W/d" --exec-root "$W/e" -H "unix://$W/d.sock" --pidfile "$W/d.pid" >"$W/dockerd.log" 2>&1 &
pids+=($!)
"$PLUGD" daemon --data-root "$W/p" --exec-root "$W/pe" -H "unix://$W/p.sock" --wasm-cache "$W/cache" \
  --log-level warn >"$W/plugd.log" 2>&1 &
plugd_pid=$!
pids+=($plugd_pid)
up() { curl -sf --unix-socket "$1" http://x/_ping >/dev/null 2>&1; }
for _ in $(seq 600); do up "$W/d.sock" && up "$W/p.sock" && break; sleep 0.1; done
up "$W/d.sock" || { echo "dockerd did not start:"; tail -20 "$W/dockerd.log"; exit 1; }
up "$W/p.sock" || { echo "plugd did not start:"; tail -20 "$W/plugd.log"; exit 1; }
D() { DOCKER_HOST="unix://$W/d.sock" docker "$@"; }
P() { "$PLUGD" -H "unix://$W/p.sock" "$@"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Bundles: the wasm example, and the static fixture for dockerd (a distinct file per create:
# dockerd 20.10 refuses a second plugin with an identical layer).
mkdir -p "$W/wasm/rootfs"
cp "$REPO/guest-examples/volume/config.json" "$W/wasm/"
cp "$T/wasm-guests/wasm32-wasip2/release/plugd_example_volume.wasm" "$W/wasm/rootfs/plugin.wasm"
static_bundle() {
  rm -rf "$W/static"; mkdir -p "$W/static/rootfs/data" "$W/static/rootfs/run/docker/plugins" "$W/static/rootfs/etc"
  cp "$REPO/tests/fixtures/static-plugin/config.json" "$W/static/"
  cp "$T/x86_64-unknown-linux-musl/release/plugd-static-plugin" "$W/static/rootfs/static-plugin"
  echo "$1" >"$W/static/rootfs/etc/plugd-bundle"
}

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "# plugd $("$PLUGD" --version 2>/dev/null || echo dev), $(dockerd --version)"
rss0=$(rss_kb "$plugd_pid")
for i in $(seq "$REPS"); do
  P create "cold$i" "$W/wasm" >/dev/null
  rm -rf "$W/cache"/*
  "$BENCH" enable --api "$W/p.sock" --name "cold$i" --plugin-socket "/run/docker/plugins/cold$i.sock" --label plugd-wasm-cold
  P create "warm$i" "$W/wasm" >/dev/null
  "$BENCH" enable --api "$W/p.sock" --name "warm$i" --plugin-socket "/run/docker/plugins/warm$i.sock" --label plugd-wasm-warm
  static_bundle "s$i"
  D plugin create "s$i" "$W/static" >/dev/null
  id=$(D plugin inspect -f '{{.Id}}' "s$i")
  "$BENCH" enable --api "$W/d.sock" --name "s$i" --plugin-socket "/run/docker/plugins/$id/static.sock" --label dockerd-native
done
rss_n=$(rss_kb "$plugd_pid")
printf 'rss\tplugd\tbase_kb=%s\twith_%s_wasm_plugins_kb=%s\tper_plugin_kb=%s\n' "$rss0" "$((2 * REPS))" "$rss_n" "$(( (rss_n - rss0) / (2 * REPS) ))"
shim=$(pgrep -f "containerd-shim-runc-v2 -namespace plugins.moby" | head -1 || true)
[ -n "$shim" ] && printf 'rss\tdockerd-shim\tper_plugin_kb=%s\n' "$(rss_kb "$shim")"

# The SDK example, native packaging (same bundle for plugd and dockerd).
native_bundle() {
  rm -rf "$W/native"; mkdir -p "$W/native/rootfs/data" "$W/native/rootfs/run/docker/plugins" "$W/native/rootfs/etc"
  cp "$REPO/guest-examples/volume/config-native.json" "$W/native/config.json"
  cp "$T/wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-volume" "$W/native/rootfs/"
  echo "$1" >"$W/native/rootfs/etc/plugd-bundle"
}
rss1=$(rss_kb "$plugd_pid")
for i in $(seq "$REPS"); do
  native_bundle "n$i"
  P create "n$i" "$W/native" >/dev/null
  "$BENCH" enable --api "$W/p.sock" --name "n$i" --plugin-socket "/run/docker/plugins/n$i.sock" --label plugd-native-example
  D plugin create "dn$i" "$W/native" >/dev/null
  did=$(D plugin inspect -f '{{.Id}}' "dn$i")
  "$BENCH" enable --api "$W/d.sock" --name "dn$i" --plugin-socket "/run/docker/plugins/$did/volume.sock" --label dockerd-native-example
done
rss2=$(rss_kb "$plugd_pid")
printf 'rss\tplugd\twith_%s_more_native_plugins_kb=%s\tper_native_plugin_kb=%s\n' "$REPS" "$rss2" "$(( (rss2 - rss1) / REPS ))"
n1=$(P inspect -f '{{.Id}}' n1)
n1pid=$(grep -o '"pid": *[0-9]*' "$W/pe/state/$n1/state.json" | grep -o '[0-9]*$')
printf 'rss\tnative-example-process_kb=%s\n' "$(rss_kb "$n1pid")"

vol='{"Name":"bench","Opts":null}'
curl -sf --unix-socket /run/docker/plugins/warm1.sock -X POST -d "$vol" http://x/VolumeDriver.Create >/dev/null
curl -sf --unix-socket "/run/docker/plugins/$id/static.sock" -X POST -d "$vol" http://x/VolumeDriver.Create >/dev/null
for s in /run/docker/plugins/n1.sock "/run/docker/plugins/$did/volume.sock"; do
  curl -sf --unix-socket "$s" -X POST -d "$vol" http://x/VolumeDriver.Create >/dev/null
done
for c in 1 8; do
  "$BENCH" rtt --socket /run/docker/plugins/warm1.sock --clients "$c" --label plugd-wasm-example
  "$BENCH" rtt --socket /run/docker/plugins/n1.sock --clients "$c" --label plugd-native-example-via-plugd
  "$BENCH" rtt --socket "$W/pe/plugins/$n1/volume.sock" --clients "$c" --label plugd-native-example-direct
  "$BENCH" rtt --socket "/run/docker/plugins/$did/volume.sock" --clients "$c" --label dockerd-native-example
  "$BENCH" rtt --socket "/run/docker/plugins/$id/static.sock" --clients "$c" --label dockerd-static-fixture
done
