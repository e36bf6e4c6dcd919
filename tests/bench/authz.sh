#!/usr/bin/env bash
# Issue 8: the AuthZ overhead per Engine API call (docs/benchmarks.md). In one run: plugd serves the
# SDK's authz example (guest-examples/authz, DENY empty: allow all) twice, as the wasm component and
# as the native musl binary; a fourth dockerd manages the same native binary itself (`docker plugin
# create` + `enable` of the same bundle, `dauthz`). Four dockerds run side by side, one with no
# authorization plugin, one per plugd packaging (`--authorization-plugin=wauthz` / `nauthz`) and
# one with its own managed plugin (`--authorization-plugin=dauthz`: dockerd checks at start that
# the plugin exists and is enabled, so that one starts without the flag, creates and enables the
# plugin, is stopped and started again with the flag). `plugd-bench rtt --method GET` then times
# raw `GET /v1.41/volumes` round trips on a keep-alive connection to each dockerd, the four
# interleaved round by round, and the script prints ms/call, the ratios to no authz and plugd's
# native over dockerd's managed native; then one AuthZReq alone on plugd's socket of each
# packaging and on the managed plugin's own socket (no dockerd in the path).
# Every call with a plugin costs two AuthZ calls (AuthZReq and AuthZRes).
# Release builds. Run as root: tests/bench/authz.sh [ROUNDS] [REQUESTS_PER_ROUND].
set -euo pipefail
ROUNDS=${1:-5}
REQS=${2:-2000}
if [ -z "${PLUGD_BENCH_INNER:-}" ]; then
  cd "$(dirname "$(readlink -f "$0")")/../.."
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/plugd/target}"
  cargo build --release -p plugd -p plugd-bench
  cargo build --release -p plugd-init --target x86_64-unknown-linux-musl
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target wasm32-wasip2 \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-authz
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-guests" cargo build --release --target x86_64-unknown-linux-musl \
    --manifest-path guest-examples/Cargo.toml -p plugd-example-authz-native
  export PLUGD_BENCH_INNER=1 REPO="$PWD"
  exec unshare -m --propagation private "$0" "$@"
fi

T=$CARGO_TARGET_DIR
PLUGD=$T/release/plugd
BENCH=$T/release/plugd-bench
W=$(mktemp -d /tmp/pa-XXXXXX)
mkdir -p /run/docker/plugins /run/containerd
mount -t tmpfs tmpfs /run/docker/plugins
mount -t tmpfs tmpfs /run/containerd
pids=()
cleanup() {
  # dockerd's managed plugin: disable it while its dockerd is up; then whatever runs under this
  # run's scratch dir (the shim of that dockerd's containerd, and the plugin under it) goes too.
  if [ -S "$W/managed.sock" ]; then
    timeout 20 env DOCKER_HOST="unix://$W/managed.sock" docker plugin disable -f dauthz >/dev/null 2>&1 || true
  fi
  for shim in $(pgrep -f "containerd-shim.*$W/" || true); do
    for c in $(pgrep -P "$shim" || true); do kill -9 "$c" 2>/dev/null || true; done
    kill -9 "$shim" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  umount -R /run/docker/plugins /run/containerd 2>/dev/null || true
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

mkdir -p "$W/wasm/rootfs" "$W/native/rootfs/run/docker/plugins"
cp "$REPO/guest-examples/authz/config.json" "$W/wasm/"
cp "$T/wasm-guests/wasm32-wasip2/release/plugd_example_authz.wasm" "$W/wasm/rootfs/plugin.wasm"
cp "$REPO/guest-examples/authz/config-native.json" "$W/native/config.json"
cp "$T/wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-authz" "$W/native/rootfs/"
P create wauthz "$W/wasm" >/dev/null && P enable wauthz >/dev/null
P create nauthz "$W/native" >/dev/null && P enable nauthz >/dev/null

# One dockerd per configuration, each with its own roots (and so its own containerd).
dockerd_for() { # name [extra flags]
  local n=$1; shift
  echo "{}" >"$W/$n.json"
  dockerd --iptables=false --bridge=none --storage-driver=vfs --config-file "$W/$n.json" \
    --data-root "$W/$n" --exec-root "$W/$n-x" -H "unix://$W/$n.sock" --pidfile "$W/$n.pid" \
    "$@" >>"$W/$n.log" 2>&1 &
  pids+=($!)
  wait_up "$W/$n.sock" "dockerd $n" "$W/$n.log"
}
dockerd_for none
dockerd_for wasm --authorization-plugin=wauthz
dockerd_for native --authorization-plugin=nauthz

# dockerd-managed: the same native binary and config, created and enabled by a dockerd of its own,
# which is then stopped (by pid) and started again with `--authorization-plugin=dauthz`.
mkdir -p "$W/managed-bundle/rootfs/run/docker/plugins"
cp "$REPO/guest-examples/authz/config-native.json" "$W/managed-bundle/config.json"
cp "$T/wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-authz" "$W/managed-bundle/rootfs/"
D() { DOCKER_HOST="unix://$W/managed.sock" docker "$@"; }
dockerd_for managed
D plugin create dauthz "$W/managed-bundle" >/dev/null
D plugin enable dauthz >/dev/null
dauthz_id=$(D plugin inspect -f '{{.Id}}' dauthz)
mpid=$(cat "$W/managed.pid")
kill "$mpid"
for _ in $(seq 300); do kill -0 "$mpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$mpid" 2>/dev/null; then echo "dockerd managed did not stop:"; tail -20 "$W/managed.log"; exit 1; fi
dockerd_for managed --authorization-plugin=dauthz
[ "$(D plugin inspect -f '{{.Enabled}}' dauthz)" = true ] || { echo "dauthz not enabled after restart"; exit 1; }

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
echo "# $(dockerd --version); $ROUNDS rounds x $REQS GET /v1.41/volumes per configuration, interleaved"
: >"$W/results"
for r in $(seq "$ROUNDS"); do
  for n in none wasm native managed; do
    "$BENCH" rtt --socket "$W/$n.sock" --method GET --path /v1.41/volumes --body "" \
      --requests "$REQS" --rounds 1 --label "$n" | tee -a "$W/results" | sed "s/^/round $r\t/"
  done
done
# One AuthZ call alone, on plugd's socket for each packaging (what dockerd sends for `GET
# /v1.41/volumes`, headers trimmed): plugd's gateway and the plugin, without dockerd.
authz_req='{"RequestMethod":"GET","RequestUri":"/v1.41/volumes","RequestHeaders":{"User-Agent":"Go-http-client/1.1"}}'
for n in wauthz nauthz; do
  "$BENCH" rtt --socket "/run/docker/plugins/$n.sock" --path /AuthZPlugin.AuthZReq --body "$authz_req" \
    --requests "$REQS" --rounds "$ROUNDS" --label "$n-AuthZReq-on-plugd-socket"
done
dsock=$(find /run/docker/plugins/"$dauthz_id" "$W/managed-x" -name authz.sock -type s 2>/dev/null | head -1 || true)
if [ -n "$dsock" ]; then
  "$BENCH" rtt --socket "$dsock" --path /AuthZPlugin.AuthZReq --body "$authz_req" \
    --requests "$REQS" --rounds "$ROUNDS" --label "dauthz-AuthZReq-on-managed-plugin-socket"
else
  echo "# dauthz: the managed plugin's socket was not found"
fi
# Per configuration: the median round's mean ms/call (1000 / req_s) and p50; ratios to `none`.
awk -F'\t' '
  { label = $2; for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    n[label]++; ms[label, n[label]] = 1000 / v["req_s"]; p50[label, n[label]] = v["p50_us"] / 1000 }
  function median(arr, label, k,   a, i, j, t) {
    for (i = 1; i <= k; i++) a[i] = arr[label, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((k + 1) / 2)]
  }
  END {
    base = median(ms, "none", n["none"])
    split("none wasm native managed", order, " ")
    for (o = 1; o <= 4; o++) {
      l = order[o]; m = median(ms, l, n[l])
      printf "authz\t%s\tms_per_call=%.3f\tp50_ms=%.3f\tratio_to_none=%.2f\tauthz_overhead_ms=%.3f\n",
        l, m, median(p50, l, n[l]), m / base, m - base
    }
    # Same binary, plugd-served vs dockerd-managed: ratio of ms/call and of the overhead over none.
    nat = median(ms, "native", n["native"]); man = median(ms, "managed", n["managed"])
    printf "authz\tplugd-native/dockerd-managed\tratio_ms_per_call=%.2f\tratio_overhead=%.2f\n",
      nat / man, (man - base > 0 ? (nat - base) / (man - base) : 0)
  }' "$W/results"
