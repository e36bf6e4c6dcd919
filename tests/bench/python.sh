#!/usr/bin/env bash
# The Python guest (guest-examples/python-volume, componentize-py) against the Rust wasm example
# under the same plugd (docs/benchmarks.md, "Issue 9"):
#   1. component sizes;
#   2. enable -> socket answers / API returns, cold (compile cache emptied first) and warm;
#   3. plugd's RSS per enabled plugin of each;
#   4. POST /VolumeDriver.Get round trips, 1 and 8 keep-alive clients.
# Release builds (plugd, plugd-bench); guests are always release. No dockerd: these are plugd's
# own costs. Run as root: tests/bench/python.sh [REPS]. Prints tab-separated figures; asserts
# nothing.
set -euo pipefail
REPS=${1:-3}
if [ -z "${PLUGD_BENCH_INNER:-}" ]; then
  cd "$(dirname "$(readlink -f "$0")")/../.."
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/plugd/target}"
  cargo build --release -p plugd -p plugd-bench
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target wasm32-wasip2 \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-volume
  guest-examples/python-volume/build.sh
  export PLUGD_BENCH_INNER=1 REPO="$PWD"
  exec unshare -m --propagation private "$0" "$@"
fi

T=$CARGO_TARGET_DIR
PLUGD=$T/release/plugd
BENCH=$T/release/plugd-bench
W=$(mktemp -d /tmp/pb-XXXXXX)
mkdir -p /run/docker/plugins
mount -t tmpfs tmpfs /run/docker/plugins
plugd_pid=
cleanup() {
  if [ -n "$plugd_pid" ]; then
    kill "$plugd_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$plugd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$plugd_pid" 2>/dev/null || true
  fi
  umount -R /run/docker/plugins 2>/dev/null || true
  awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT

"$PLUGD" daemon --data-root "$W/p" --exec-root "$W/pe" -H "unix://$W/p.sock" --wasm-cache "$W/cache" \
  --log-level warn >"$W/plugd.log" 2>&1 &
plugd_pid=$!
up() { curl -sf --unix-socket "$1" http://x/_ping >/dev/null 2>&1; }
for _ in $(seq 600); do up "$W/p.sock" && break; sleep 0.1; done
up "$W/p.sock" || { echo "plugd did not start:"; tail -20 "$W/plugd.log"; exit 1; }
P() { "$PLUGD" -H "unix://$W/p.sock" "$@"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

bundle() { # <dir> <config.json> <component>
  mkdir -p "$1/rootfs"
  cp "$2" "$1/config.json"
  cp "$3" "$1/rootfs/plugin.wasm"
}
bundle "$W/py" "$REPO/guest-examples/python-volume/config.json" "$T/wasm-guests/python-volume.wasm"
bundle "$W/rs" "$REPO/guest-examples/volume/config.json" \
  "$T/wasm-guests/wasm32-wasip2/release/plugd_example_volume.wasm"

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
printf 'size\tpython\tbytes=%s\n' "$(stat -c %s "$W/py/rootfs/plugin.wasm")"
printf 'size\trust\tbytes=%s\n' "$(stat -c %s "$W/rs/rootfs/plugin.wasm")"
rss0=$(rss_kb "$plugd_pid")
for kind in py rs; do
  for i in $(seq "$REPS"); do
    P create "${kind}cold$i" "$W/$kind" >/dev/null
    rm -rf "$W/cache"/*
    "$BENCH" enable --api "$W/p.sock" --name "${kind}cold$i" \
      --plugin-socket "/run/docker/plugins/${kind}cold$i.sock" --label "$kind-cold"
    start=$(date +%s%N)
    P create "${kind}warm$i" "$W/$kind" >/dev/null
    printf 'create\t%s-warm\tms=%d\n' "$kind" $(( ($(date +%s%N) - start) / 1000000 ))
    "$BENCH" enable --api "$W/p.sock" --name "${kind}warm$i" \
      --plugin-socket "/run/docker/plugins/${kind}warm$i.sock" --label "$kind-warm"
  done
  rss=$(rss_kb "$plugd_pid")
  printf 'rss\t%s\tper_plugin_kb=%s\n' "$kind" "$(( (rss - rss0) / (2 * REPS) ))"
  rss0=$rss
done

vol='{"Name":"bench","Opts":null}'
for kind in py rs; do
  curl -sf --unix-socket "/run/docker/plugins/${kind}warm1.sock" -X POST -d "$vol" \
    http://x/VolumeDriver.Create >/dev/null
done
for c in 1 8; do
  for kind in py rs; do
    "$BENCH" rtt --socket "/run/docker/plugins/${kind}warm1.sock" --clients "$c" --label "$kind"
  done
done
