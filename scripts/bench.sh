#!/usr/bin/env bash
# Benchmark a fresh local 3-node raftkv cluster, side by side with a 3-member
# etcd when etcd is installed, using the same load generator (raftkv-bench).
#
# Usage: scripts/bench.sh [--quick] [--sustained]
#   (default)    the standard matrix, BENCH_ROUNDS rounds alternating raftkv
#                and etcd, medians reported
#   --quick      2 s runs, one round: checks the script, numbers are rough
#   --sustained  raftkv only: BENCH_SUSTAINED seconds of writes at c=64 over
#                several snapshots and log compactions, per 10 s window
# Environment: BENCH_DURATION (10s), BENCH_ROUNDS (3), BENCH_SUSTAINED (180),
# BENCH_OUT (bench-results/<time>). Only processes this script starts are
# stopped; their data directories are removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=matrix
duration=${BENCH_DURATION:-10s}
rounds=${BENCH_ROUNDS:-3}
for arg in "$@"; do
	case $arg in
	--quick) duration=2s rounds=1 ;;
	--sustained) mode=sustained ;;
	*) echo "usage: $0 [--quick] [--sustained]" >&2; exit 2 ;;
	esac
done
out=${BENCH_OUT:-$repo/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
work=$(mktemp -d)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

echo "building bin/raftkv and bin/raftkv-bench"
(cd "$repo" && go build -o bin/raftkv ./cmd/raftkv && go build -o bin/raftkv-bench ./cmd/raftkv-bench)
bench=$repo/bin/raftkv-bench

# wait_for CMD...: poll until CMD succeeds, at most 30 s.
wait_for() {
	for _ in $(seq 1 150); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	echo "timed out waiting for: $*" >&2
	return 1
}

raftkv_pids=() etcd_pids=()
raftkv_urls=http://127.0.0.1:18001,http://127.0.0.1:18002,http://127.0.0.1:18003
etcd_urls=http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379

start_raftkv() {
	local i join
	for i in 1 2 3; do
		join=""
		[[ $i == 1 ]] || join=127.0.0.1:18001
		env RAFT_NODE_ID="n$i" HTTP_SERVER_PORT=$((18000 + i)) RAFT_SERVER_PORT=$((19000 + i)) \
			RAFT_VOLUME_DIR="$work/raftkv$i" RAFT_JOIN="$join" LOG_LEVEL=warn "$@" \
			"$repo/bin/raftkv" >"$out/raftkv$i.log" 2>&1 &
		pids+=($!) raftkv_pids+=($!)
	done
	wait_for bash -c "curl -sf http://127.0.0.1:18001/nodes | python3 -c 'import json,sys; n=json.load(sys.stdin); sys.exit(not (len(n)==3 and all(m[\"http_addr\"] for m in n)))'"
}

have_etcd=false
start_etcd() {
	local i cluster=""
	for i in 1 2 3; do cluster+="e$i=http://127.0.0.1:${i}2380,"; done
	for i in 1 2 3; do
		etcd --name "e$i" --data-dir "$work/etcd$i" \
			--listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
			--listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
			--initial-cluster "${cluster%,}" --initial-cluster-state new --log-level error >"$out/etcd$i.log" 2>&1 &
		pids+=($!) etcd_pids+=($!)
	done
	wait_for curl -sf http://127.0.0.1:12379/health
}

# cpu_ticks PID...: summed user+system clock ticks of the processes.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_mib() { local p; for p in "$@"; do awk '/VmRSS/ {printf "%d ", $2/1024}' "/proc/$p/status"; done; }

# run SYSTEM CELL ROUND ARGS...: one measured run, JSON kept under $out.
run() {
	local sys=$1 cell=$2 round=$3
	shift 3
	local urls=$raftkv_urls kind=raftkv procs=("${raftkv_pids[@]}")
	if [[ $sys == etcd ]]; then urls=$etcd_urls kind=etcd procs=("${etcd_pids[@]}"); fi
	local before after
	before=$(cpu_ticks "${procs[@]}")
	"$bench" -target-kind "$kind" -targets "$urls" -d "$duration" -progress=false -json "$@" \
		>"$out/$sys-$cell-$round.json" 2>"$out/$sys-$cell-$round.err" || true
	after=$(cpu_ticks "${procs[@]}")
	echo "$(( after - before )) $(rss_mib "${procs[@]}")" >"$out/$sys-$cell-$round.res"
	printf '  %-7s %-16s round %d: %s ops/s\n' "$sys" "$cell" "$round" \
		"$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["ops_per_sec"]))' "$out/$sys-$cell-$round.json" 2>/dev/null || echo failed)"
}

cells=(
	"writes-c1|-c 1 -ratio 1"
	"writes-c16|-c 16 -ratio 1"
	"writes-c64|-c 64 -ratio 1"
	"lin-reads-c16|-c 16 -ratio 0 -consistency linearizable"
	"stale-reads-c16|-c 16 -ratio 0 -consistency stale"
	"mixed-90-10-c64|-c 64 -ratio 0.1"
	"writes-64KiB-c16|-c 16 -ratio 1 -value-size 65536 -keys 1000"
)

matrix() {
	start_raftkv
	if command -v etcd >/dev/null; then
		have_etcd=true
		start_etcd
	else
		echo "etcd not found: apt-get install etcd-server to compare; measuring raftkv only"
	fi
	local systems=(raftkv)
	$have_etcd && systems+=(etcd)
	for sys in "${systems[@]}"; do
		local urls=$raftkv_urls kind=raftkv
		[[ $sys == etcd ]] && urls=$etcd_urls kind=etcd
		echo "preloading $sys"
		"$bench" -target-kind "$kind" -targets "$urls" -n 10000 -c 16 -ratio 1 -warmup 0 -preload -progress=false >/dev/null
	done
	local round cell name args sys
	for round in $(seq 1 "$rounds"); do
		for cell in "${cells[@]}"; do
			name=${cell%%|*} args=${cell#*|}
			for sys in "${systems[@]}"; do
				# shellcheck disable=SC2086 # args are flags, split on purpose
				run "$sys" "$name" "$round" $args
			done
		done
	done
	python3 - "$out" "$rounds" "$(nproc)" <<'EOF' | tee "$out/results.md"
import json, os, statistics, sys
out, rounds, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cells = ["writes-c1", "writes-c16", "writes-c64", "lin-reads-c16", "stale-reads-c16", "mixed-90-10-c64", "writes-64KiB-c16"]
def load(sys_, cell):
    runs = []
    for r in range(1, rounds + 1):
        p = f"{out}/{sys_}-{cell}-{r}.json"
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            continue
        j = json.load(open(p))
        ticks, *rss = open(f"{out}/{sys_}-{cell}-{r}.res").read().split()
        runs.append((j["ops_per_sec"], j["latency_ms"]["p50"], j["latency_ms"]["p99"], int(ticks) / 100 / (j["duration_s"] + 1.0), rss, j))
    return runs
def med(runs, i):
    vals = [r[i] for r in runs if r[i] is not None]
    return statistics.median(vals) if vals else None
have_etcd = os.path.exists(f"{out}/etcd-writes-c1-1.json")
print(f"| cell | raftkv ops/s | etcd ops/s | raftkv/etcd | raftkv p50 / p99 ms | etcd p50 / p99 ms |")
print("|---|---|---|---|---|---|")
for c in cells:
    a, b = load("raftkv", c), load("etcd", c) if have_etcd else []
    if not a:
        continue
    ra = f"{med(a,0):,.0f}"; rb = f"{med(b,0):,.0f}" if b else "—"
    ratio = f"{med(a,0)/med(b,0):.2f}×" if b else "—"
    la = f"{med(a,1):.2f} / {med(a,2):.2f}"; lb = f"{med(b,1):.2f} / {med(b,2):.2f}" if b else "—"
    print(f"| {c} | {ra} | {rb} | {ratio} | {la} | {lb} |")
print()
print(f"Medians of {rounds} alternating run(s) per cell; {cores} cores shared by all servers and the load generator.")
print()
print("| cell | system | server CPU (cores) | RSS per node after the run (MiB) |")
print("|---|---|---|---|")
for c in cells:
    for s in (["raftkv", "etcd"] if have_etcd else ["raftkv"]):
        runs = load(s, c)
        if runs:
            cpu = med(runs, 3)
            print(f"| {c} | {s} | {cpu:.2f} | {' '.join(runs[-1][4])} |" if cpu is not None else f"| {c} | {s} | — | {' '.join(runs[-1][4])} |")
EOF
}

sustained() {
	local secs=${BENCH_SUSTAINED:-180}
	start_raftkv RAFT_SNAPSHOT_THRESHOLD=20000 RAFT_SNAPSHOT_INTERVAL=5s
	local snap_before snap_after
	snap_before=$(curl -s http://127.0.0.1:18001/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_snapshot_index"])')
	echo "sustained writes at c=64 for ${secs}s"
	"$bench" -targets "$raftkv_urls" -c 64 -ratio 1 -d "${secs}s" -json -progress=true >"$out/sustained.json" 2>"$out/sustained.err" || true
	snap_after=$(curl -s http://127.0.0.1:18001/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_snapshot_index"])')
	python3 - "$out/sustained.json" "$snap_before" "$snap_after" <<'EOF' | tee "$out/sustained.md"
import json, statistics, sys
j = json.load(open(sys.argv[1]))
ps = j["per_second"]
windows = [sum(ps[i:i+10]) / 10 for i in range(0, len(ps) - len(ps) % 10, 10)]
first = statistics.median(windows[:6]) if windows else 0
print(f"sustained: {j['ops_per_sec']:,.0f} ops/s over {len(ps)} s; snapshot index {sys.argv[2]} -> {sys.argv[3]}")
print("| window | ops/s | of first minute's median |")
print("|---|---|---|")
worst = 1e9
for i, w in enumerate(windows):
    worst = min(worst, w / first if first else 0)
    print(f"| {i*10}-{i*10+10} s | {w:,.0f} | {w/first:.0%} |")
zero = longest = 0
for v in ps:
    zero = zero + 1 if v == 0 else 0
    longest = max(longest, zero)
mx = j["latency_ms"]["max"]
print()
print(f"worst window {worst:.0%} of the first minute's median (target >= 90%); longest request {mx:.0f} ms and {longest} whole seconds without a completed write (target: no stall > 200 ms)")
EOF
}

if [[ $mode == sustained ]]; then sustained; else matrix; fi
echo "results in $out"
