#!/usr/bin/env bash
# Benchmark a fresh local 3-node raftkv cluster side by side with a 3-member
# etcd (when installed), driven by the same load generator (raftkv-bench).
#
# Usage: scripts/bench.sh [--quick] [--sustained | --scale | --surface | --watch]
#   (default)    the standard matrix: every cell run against raftkv and etcd
#                alternately (A B A B ...), BENCH_ROUNDS rounds, medians
#   --scale      the same machinery on the scale cells: writes of 100 B,
#                10 KiB and 1 MiB values, writes at c=64, linearizable reads;
#                run it with BENCH_NODES=3 and BENCH_NODES=5 to compare sizes
#   --surface    the same machinery on the multi-key cells, after preloading
#                both systems with the same BENCH_SURFACE_KEYS keys (100 B
#                values, 100 puts per transaction): listing the first 1,000
#                keys (raftkv GET /kv/bench/?recurse&limit=1000, etcd
#                /v3/kv/range with range_end and limit 1000) at c=16,
#                counting every key under the prefix (raftkv ?recurse&count,
#                etcd count_only) at c=16, a 3-operation transaction
#                (compare mod_index > 0 and 2 puts; raftkv POST /txn, etcd
#                /v3/kv/txn) at c=64, and plain writes at c=64 as the
#                reference for the transaction goal; then the goals (ranges
#                ≥ 2× etcd's throughput, transactions ≥ 1.5× etcd's
#                writes/s at c=64) with their ratios. Separate from the
#                default matrix, whose cells and 10,000-key store stay as
#                they were.
#   --watch      the change feed: BENCH_WATCHERS (1,000) watchers of one
#                prefix, opened round-robin over all nodes of each system
#                (raftkv GET /watch/{prefix}, Server-Sent Events; etcd its
#                gateway's streaming POST /v3/watch), idle, then puts under
#                the prefix at c=16 for BENCH_DURATION: events/s delivered
#                to all watchers while writing, put acknowledged → event
#                received p50/p99, every watcher checked to have received
#                every acknowledged put exactly once in order (a run that
#                loses one fails), and memory per idle watcher (the nodes'
#                summed VmRSS with the watchers idle minus with none, each
#                read once it settled, / watchers; round 1 only, on the
#                fresh clusters). Then a second cell at the same offered
#                load for both systems: the same watchers and writers, the
#                puts paced to BENCH_WATCH_RATE per second (raftkv-bench
#                -rate), so put → event latency is compared at equal write
#                rates and not only each at its own saturation. Alternating
#                raftkv and etcd, BENCH_ROUNDS rounds, medians; prints the
#                table rows ready to paste into BENCHMARKS.md, with the load
#                average
#   --quick      2 s runs, one round: checks the script; numbers are rough
#   --sustained  raftkv only: BENCH_SUSTAINED of writes at c=64 with a low
#                snapshot threshold, so the run spans several snapshots and
#                log compactions; throughput per 10 s window and stalls
#
# Environment:
#   BENCH_DURATION   measured time per run (default 10s; 1 s warmup on top)
#   BENCH_ROUNDS     runs per cell and system (default 3)
#   BENCH_NODES      cluster size of both systems: 3 (default) or 5
#   BENCH_SUSTAINED  length of the sustained run: 180, 180s or 3m (default 180s)
#   BENCH_SNAPSHOT_THRESHOLD  RAFT_SNAPSHOT_THRESHOLD of the sustained run (50000)
#   BENCH_LARGE_KEYS key space of the 64 KiB cell (default 1000: 64 MiB of data)
#   BENCH_SURFACE_KEYS  keys preloaded for --surface (default 100000)
#   BENCH_WATCHERS   watchers of --watch (default 1000)
#   BENCH_WATCH_RATE puts/s of --watch's equal-load cell, over all 16 writers
#                    (default 20: below etcd's ~24/s at saturation; 0: no
#                    such cell)
#   BENCH_OUT        results directory (default bench-results/<UTC time>)
#   BENCH_ETCD       the etcd binary (default: etcd on PATH)
# Other variables (ENABLE_PPROF, LOG_LEVEL, RAFT_*, ...) reach the raftkv nodes.
#
# Output: tables on stdout and in $BENCH_OUT/results.md (or sustained.md), raw
# -json per run in $BENCH_OUT/runs, node logs in $BENCH_OUT/logs. Exit status:
# 0 when the measurements were made (read the tables), 1 when --sustained
# missed its target, 2 for usage errors, other non-zero when the clusters or
# the load generator could not run. Only the processes this script starts are
# stopped, and their data directories are removed on exit.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit "${1:-2}"
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=matrix
duration=${BENCH_DURATION:-10s}
rounds=${BENCH_ROUNDS:-3}
for arg in "$@"; do
	case $arg in
	--quick) duration=2s rounds=1 ;;
	--sustained) mode=sustained ;;
	--scale) mode=scale ;;
	--surface) mode=surface ;;
	--watch) mode=watch ;;
	-h | --help) usage 0 ;;
	*) echo "unknown argument: $arg" >&2; usage ;;
	esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2; }
nodes=${BENCH_NODES:-3}
[[ $nodes == 3 || $nodes == 5 ]] || { echo "BENCH_NODES must be 3 or 5, not '$nodes'" >&2; exit 2; }
sustained_spec=${BENCH_SUSTAINED:-180s}
case $sustained_spec in
*m) sustained_secs=$((${sustained_spec%m} * 60)) ;;
*s) sustained_secs=${sustained_spec%s} ;;
*) sustained_secs=$sustained_spec ;;
esac
[[ $sustained_secs =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_SUSTAINED must be seconds (180, 180s) or minutes (3m)" >&2; exit 2; }
snapshot_threshold=${BENCH_SNAPSHOT_THRESHOLD:-50000}
large_keys=${BENCH_LARGE_KEYS:-1000}
surface_keys=${BENCH_SURFACE_KEYS:-100000}
[[ $surface_keys =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_SURFACE_KEYS must be a positive integer, not '$surface_keys'" >&2; exit 2; }
watchers=${BENCH_WATCHERS:-1000}
[[ $watchers =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_WATCHERS must be a positive integer, not '$watchers'" >&2; exit 2; }
watch_rate=${BENCH_WATCH_RATE:-20}
[[ $watch_rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "BENCH_WATCH_RATE must be puts per second (20, 12.5; 0: no equal-load cell), not '$watch_rate'" >&2; exit 2; }
etcd_bin=${BENCH_ETCD:-etcd}
command -v python3 >/dev/null || { echo "python3 is required (JSON handling)" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 2; }

out=${BENCH_OUT:-$repo/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/runs" "$out/logs"
work=$(mktemp -d -t raftkv-bench.XXXXXX)
# Every process this script starts in the background is recorded here, and
# only these are ever signalled. PIDs are reused quickly (pid_max may be
# 32768), so a recorded PID is signalled only while it is still a child of
# this shell.
pids=()
gen_pid="" # the load generator currently running, if any
gen_wrap=() # a command the load generator runs under (the preload's timeout)

# ours PID: PID is a live child of this shell (fields 3 and 4 of
# /proc/PID/stat, counted after the parenthesised command name).
ours() {
	local stat fields
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	read -ra fields <<<"${stat##*) }"
	[[ ${fields[1]} == "$$" && ${fields[0]} != Z ]]
}
signal() {
	local sig=$1 p
	shift
	for p in "$@"; do
		if [[ -n $p ]] && ours "$p"; then kill "-$sig" "$p" 2>/dev/null || true; fi
	done
}
forget() {
	local p keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# shellcheck disable=SC2317 # run by trap
cleanup() {
	local p _ alive
	trap - EXIT INT TERM
	signal TERM "$gen_pid" "${pids[@]}"
	for _ in $(seq 1 50); do # up to 10 s for a clean exit
		alive=()
		for p in "$gen_pid" "${pids[@]}"; do
			if [[ -n $p ]] && ours "$p"; then alive+=("$p"); fi
		done
		((${#alive[@]} > 0)) || break
		sleep 0.2
	done
	if ((${#alive[@]} > 0)); then
		echo "still running 10 s after SIGTERM, sending SIGKILL: ${alive[*]}" >&2
		signal KILL "${alive[@]}"
	fi
	for p in "$gen_pid" "${pids[@]}"; do [[ -z $p ]] || wait "$p" 2>/dev/null || true; done
	rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $(stat -f -c %T "$work") == tmpfs ]]; then
	echo "warning: $work is on tmpfs, where fsync costs nothing; set TMPDIR to a directory on disk" >&2
fi

echo "building bin/raftkv and bin/raftkv-bench"
(cd "$repo" && go build -o bin/raftkv ./cmd/raftkv && go build -o bin/raftkv-bench ./cmd/raftkv-bench)
bench=$repo/bin/raftkv-bench

# wait_for SECONDS CMD...: poll every 0.2 s until CMD succeeds; give up
# early if a process in $watch (the servers being started) has exited.
watch=()
wait_for() {
	local secs=$1 _ p
	shift
	for _ in $(seq 1 $((secs * 5))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		for p in "${watch[@]}"; do
			if ! ours "$p"; then
				echo "a server exited while waiting for: $*; see the logs in $out/logs:" >&2
				tail -n 3 "$out"/logs/*.log >&2
				return 1
			fi
		done
		sleep 0.2
	done
	echo "timed out after ${secs}s waiting for: $*" >&2
	return 1
}

# ports_free PORT...: none of them is bound on 127.0.0.1.
ports_free() {
	python3 - "$@" <<'EOF'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go and etcd listen: TIME_WAIT is no clash
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

# Ports: raftkv HTTP 18000-18004 and Raft 19000-19004, etcd client
# 20000-20004 and peer 21000-21004 (the seed's scripts use 8000-8002 and
# 9000-9002). If any is taken, e.g. by another run of this script, shift
# all of them by 100, up to 20 times.
for try in $(seq 0 20); do
	if ((try == 20)); then echo "no free port block found in 18000-21999" >&2; exit 1; fi
	o=$((try * 100))
	rk_http=() rk_raft=() et_client=() et_peer=()
	for ((i = 0; i < nodes; i++)); do
		rk_http+=($((18000 + o + i))) rk_raft+=($((19000 + o + i)))
		et_client+=($((20000 + o + i))) et_peer+=($((21000 + o + i)))
	done
	if ports_free "${rk_http[@]}" "${rk_raft[@]}" "${et_client[@]}" "${et_peer[@]}"; then break; fi
done
raftkv_urls=$(printf 'http://127.0.0.1:%s,' "${rk_http[@]}") raftkv_urls=${raftkv_urls%,}
etcd_urls=$(printf 'http://127.0.0.1:%s,' "${et_client[@]}") etcd_urls=${etcd_urls%,}
raftkv_pids=() etcd_pids=()

# cluster_ready: node 1 lists $nodes voters with HTTP addresses and one leader,
# and every node knows the leader (so followers can forward).
# shellcheck disable=SC2317 # run by wait_for
cluster_ready() {
	curl -sf --max-time 2 "http://127.0.0.1:${rk_http[0]}/nodes" | python3 -c '
import json, sys
n = json.load(sys.stdin)
ok = len(n) == int(sys.argv[1]) and all(m["voter"] and m["http_addr"] for m in n) and sum(bool(m["leader"]) for m in n) == 1
sys.exit(0 if ok else 1)' "$nodes" || return 1
	local port
	for port in "${rk_http[@]}"; do
		curl -sf --max-time 2 "http://127.0.0.1:$port/status" |
			python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("leader_http_addr") else 1)' || return 1
	done
}

# shellcheck disable=SC2317 # run by wait_for
node1_leader() {
	curl -sf --max-time 2 "http://127.0.0.1:${rk_http[0]}/status" |
		python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["state"] == "Leader" else 1)'
}

# start_raftkv [VAR=VALUE...]: the $nodes-node cluster, extra environment applied.
start_raftkv() {
	local i
	echo "starting raftkv on ${raftkv_urls//,/ }"
	for ((i = 0; i < nodes; i++)); do
		local join=""
		if ((i > 0)); then join=127.0.0.1:${rk_http[0]}; fi
		env RAFT_NODE_ID="n$((i + 1))" HTTP_SERVER_PORT="${rk_http[i]}" RAFT_SERVER_PORT="${rk_raft[i]}" \
			BIND_ADDR=127.0.0.1 ADVERTISE_ADDR=127.0.0.1 RAFT_VOLUME_DIR="$work/raftkv-n$((i + 1))" \
			RAFT_JOIN="$join" RAFT_BOOTSTRAP="$([[ $i == 0 ]] && echo true || echo false)" \
			LOG_LEVEL="${LOG_LEVEL:-warn}" "$@" \
			"$repo/bin/raftkv" >"$out/logs/raftkv-n$((i + 1)).log" 2>&1 &
		pids+=($!) raftkv_pids+=($!) watch=("${raftkv_pids[@]}")
		# Joining nodes retry with a 2 s backoff: start them once node 1 leads.
		if ((i == 0)); then wait_for 30 node1_leader; fi
	done
	wait_for 60 cluster_ready
}

# shellcheck disable=SC2317 # run by wait_for
etcd_healthy() {
	local port
	for port in "${et_client[@]}"; do
		[[ $(curl -sf --max-time 2 "http://127.0.0.1:$port/health") == *'"health":"true"'* ]] || return 1
	done
}

start_etcd() {
	local i cluster=""
	echo "starting etcd on ${etcd_urls//,/ }"
	for ((i = 0; i < nodes; i++)); do cluster+="e$((i + 1))=http://127.0.0.1:${et_peer[i]},"; done
	for ((i = 0; i < nodes; i++)); do
		# Defaults otherwise (fsync on, snapshot-count 100000). The 8 GiB
		# backend quota only keeps repeated 64 KiB rounds from raising the
		# NOSPACE alarm at the 2 GiB default; it costs nothing per request.
		"$etcd_bin" --name "e$((i + 1))" --data-dir "$work/etcd-e$((i + 1))" \
			--listen-client-urls "http://127.0.0.1:${et_client[i]}" \
			--advertise-client-urls "http://127.0.0.1:${et_client[i]}" \
			--listen-peer-urls "http://127.0.0.1:${et_peer[i]}" \
			--initial-advertise-peer-urls "http://127.0.0.1:${et_peer[i]}" \
			--initial-cluster "${cluster%,}" --initial-cluster-state new \
			--initial-cluster-token "raftkv-bench-$$" --quota-backend-bytes 8589934592 \
			--logger zap --log-level error >"$out/logs/etcd-e$((i + 1)).log" 2>&1 &
		pids+=($!) etcd_pids+=($!) watch=("${etcd_pids[@]}")
	done
	wait_for 60 etcd_healthy
}

# cpu_ticks PID...: summed utime+stime clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name).
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo "$t"
}
rss_kib() {
	local p
	for p in "$@"; do awk '/^VmRSS:/ {print $2}' "/proc/$p/status"; done | paste -sd, -
}
all_alive() {
	local p
	for p in "$@"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "server process $p died; see $out/logs" >&2
			return 1
		fi
	done
}
now_ns() { date +%s%N; }

# generate JSON_FILE ERR_FILE ARGS...: run the load generator in the
# background and wait for it, so that a signal to this script interrupts the
# wait at once (and cleanup stops the generator too).
generate() {
	local json=$1 err=$2 rc=0
	shift 2
	"${gen_wrap[@]}" "$bench" "$@" >"$json" 2>"$err" &
	gen_pid=$!
	wait "$gen_pid" || rc=$?
	gen_pid=""
	return "$rc"
}
clk_tck=$(getconf CLK_TCK)

# measure SYSTEM NAME ARGS...: one run of the load generator against SYSTEM,
# its -json in runs/NAME.json and the servers' CPU and RSS in runs/NAME.res.
# The servers' CPU is counted over the generator's whole life (warmup and
# measured phase), the window its own cpu_seconds covers.
measure() {
	local sys=$1 name=$2
	shift 2
	local urls=$raftkv_urls kind=raftkv procs=("${raftkv_pids[@]}")
	if [[ $sys == etcd ]]; then urls=$etcd_urls kind=etcd procs=("${etcd_pids[@]}"); fi
	all_alive "${procs[@]}"
	local t0 t1 c0 c1 rc=0
	c0=$(cpu_ticks "${procs[@]}") t0=$(now_ns)
	generate "$out/runs/$name.json" "$out/runs/$name.err" -target-kind "$kind" -targets "$urls" -json "$@" || rc=$?
	t1=$(now_ns) c1=$(cpu_ticks "${procs[@]}")
	all_alive "${procs[@]}"
	[[ -s $out/runs/$name.err ]] || rm -f "$out/runs/$name.err"
	printf '{"rc":%d,"wall_s":%d.%03d,"server_cpu_s":%d.%02d,"rss_kib":[%s]}\n' "$rc" \
		$(((t1 - t0) / 1000000000)) $(((t1 - t0) / 1000000 % 1000)) \
		$(((c1 - c0) / clk_tck)) $(((c1 - c0) * 100 / clk_tck % 100)) "$(rss_kib "${procs[@]}")" >"$out/runs/$name.res"
	python3 - "$out/runs/$name" "$sys" "$name" <<'EOF'
import json, os, sys
base, sys_, name = sys.argv[1:]
res = json.load(open(base + ".res"))
try:
    j = json.load(open(base + ".json"))
except ValueError:
    err = open(base + ".err").read().strip().splitlines() if os.path.exists(base + ".err") else []
    print(f"  {name:<30} FAILED (exit {res['rc']}): {err[-1] if err else 'no output'}")
    sys.exit(0)
srv = res["server_cpu_s"] / res["wall_s"]
gen = j.get("cpu_seconds", 0) / res["wall_s"]
lat = j["latency_ms"]
note = f"  {j['errors']} errors" if j["errors"] else ""
print(f"  {name:<30} {j['ops_per_sec']:>9,.0f} ops/s  p50 {lat['p50']:6.2f}  p99 {lat['p99']:7.2f} ms"
      f"  cpu: servers {srv:.2f}, generator {gen:.2f} cores{note}")
EOF
}

cells=(
	"writes-c1|writes, c=1|-c 1 -ratio 1"
	"writes-c16|writes, c=16|-c 16 -ratio 1"
	"writes-c64|writes, c=64|-c 64 -ratio 1"
	"lin-reads-c16|linearizable reads, c=16|-c 16 -ratio 0 -consistency linearizable"
	"stale-reads-c16|stale reads, c=16 (etcd: serializable)|-c 16 -ratio 0 -consistency stale"
	"mixed-90-10-c64|mixed 90% reads / 10% writes, c=64|-c 64 -ratio 0.1"
	"writes-64KiB-c16|writes of 64 KiB values, c=16|-c 16 -ratio 1 -value-size 65536 -keys $large_keys"
)
if [[ $mode == scale ]]; then
	cells=(
		"writes-c16|writes of 100 B values, c=16|-c 16 -ratio 1"
		"writes-10KiB-c16|writes of 10 KiB values, c=16|-c 16 -ratio 1 -value-size 10240 -keys 1000"
		"writes-1MiB-c4|writes of 1 MiB values, c=4|-c 4 -ratio 1 -value-size 1048576 -keys 64"
		"writes-c64|writes of 100 B values, c=64|-c 64 -ratio 1"
		"lin-reads-c16|linearizable reads, c=16|-c 16 -ratio 0 -consistency linearizable"
	)
fi

if [[ $mode == surface ]]; then
	sk="-keys $surface_keys"
	cells=(
		"list-1000-c16|list 1,000 of $surface_keys keys, c=16 (etcd: range with range_end, limit 1000)|-c 16 -workload list -limit 1000 $sk"
		"count-c16|count $surface_keys keys under a prefix, c=16 (etcd: range count_only)|-c 16 -workload count $sk"
		"txn-c64|transaction: compare + 2 puts, c=64 (etcd: /v3/kv/txn)|-c 64 -workload txn $sk"
		"writes-c64|writes, c=64 (reference for the transaction goal)|-c 64 -ratio 1 $sk"
	)
fi

# surface_count SYSTEM: how many keys the system holds under bench/, read
# the way the count cell reads it.
surface_count() {
	if [[ $1 == etcd ]]; then
		curl -sf --max-time 30 -X POST "http://127.0.0.1:${et_client[0]}/v3/kv/range" \
			-d "{\"key\":\"$(printf bench/ | base64)\",\"range_end\":\"$(printf bench0 | base64)\",\"count_only\":true}" |
			python3 -c 'import json, sys; print(int(json.load(sys.stdin).get("count", 0)))'
	else
		curl -sf --max-time 30 "http://127.0.0.1:${rk_http[0]}/kv/bench/?recurse&count" |
			python3 -c 'import json, sys; print(int(json.load(sys.stdin)["count"]))'
	fi
}

header() {
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(go version | awk '{print $3}'); data on $(df --output=fstype "$work" | tail -1) under ${work%/*}"
	local extra
	extra=$(env | grep -E '^(RAFT_|ENABLE_PPROF|LOG_|REQUEST_TIMEOUT|MAX_(KEY|VALUE)_BYTES|GOMAXPROCS|GOGC|GOMEMLIMIT)' | sort | paste -sd' ' - || true)
	if [[ -n $extra ]]; then echo "- environment passed to raftkv: $extra"; fi
}

matrix() {
	local systems=(raftkv) have_etcd=false
	if command -v "$etcd_bin" >/dev/null; then
		have_etcd=true systems+=(etcd)
	else
		echo "etcd not found: apt-get install etcd-server to compare; measuring raftkv only"
	fi
	start_raftkv
	if $have_etcd; then start_etcd; fi
	local sys
	for sys in "${systems[@]}"; do
		local urls=$raftkv_urls kind=raftkv t0
		if [[ $sys == etcd ]]; then urls=$etcd_urls kind=etcd; fi
		t0=$(now_ns)
		if [[ $mode == surface ]]; then
			# Transactions of 100 puts (both systems allow 128 operations);
			# a progress line a second; bounded by 600 s.
			echo "preloading $sys with $surface_keys keys x 100 B"
			gen_wrap=(timeout 600)
			generate "$out/runs/preload-$sys.json" >(tee "$out/runs/preload-$sys.err" >&2) \
				-target-kind "$kind" -targets "$urls" -preload -preload-batch 100 -keys "$surface_keys" \
				-n 1 -c 16 -ratio 0 -warmup 0 -progress=true -json ||
				{ echo "preloading $sys failed or took over 600 s" >&2; exit 3; }
			gen_wrap=()
			local n
			n=$(surface_count "$sys") || { echo "counting the keys of $sys failed" >&2; exit 3; }
			[[ $n == "$surface_keys" ]] || { echo "$sys holds $n keys under bench/ after the preload, want $surface_keys" >&2; exit 3; }
			echo "preloaded $sys with $surface_keys keys x 100 B in $((($(now_ns) - t0) / 1000000)) ms (counted: $n)"
			continue
		fi
		generate "$out/runs/preload-$sys.json" "$out/runs/preload-$sys.err" \
			-target-kind "$kind" -targets "$urls" -preload -n 1 -c 64 -ratio 1 -warmup 0 -progress=false -json ||
			{ cat "$out/runs/preload-$sys.err" >&2; exit 3; }
		echo "preloaded $sys with 10,000 keys x 100 B in $((($(now_ns) - t0) / 1000000)) ms"
	done
	local round cell name args
	for round in $(seq 1 "$rounds"); do
		echo "round $round of $rounds (${duration} per run, 1 s warmup)"
		for cell in "${cells[@]}"; do
			name=${cell%%|*} args=${cell##*|}
			for sys in "${systems[@]}"; do
				# shellcheck disable=SC2086 # the cell's flags, split on purpose
				measure "$sys" "$sys-$name-r$round" -d "$duration" -warmup 1s -progress=false $args
			done
		done
	done
	{
		echo "# raftkv vs etcd$([[ $mode == scale ]] && echo ': scale cells')$([[ $mode == surface ]] && echo ': ranges, counts and transactions')"
		echo
		header
		echo "- $rounds round(s) of ${duration} per cell and system after a 1 s warmup$($have_etcd && echo ', alternating raftkv and etcd'); medians."
		if [[ $mode == surface ]]; then
			echo "  $surface_keys keys bench/<zero-padded number> (preloaded in transactions of 100 puts, the only keys in either store), 100 B values, requests round-robin over all $nodes nodes of each system; reads linearizable."
		else
			echo "  10,000 keys (preloaded), 100 B values, requests round-robin over all $nodes nodes of each system$([[ $mode == matrix ]] && echo "; the 64 KiB cell uses $large_keys keys")."
		fi
		if $have_etcd; then echo "- $("$etcd_bin" --version | head -1), v3 JSON gateway (/v3/kv/put, /v3/kv/range$([[ $mode == surface ]] && echo ', /v3/kv/txn')), 8 GiB backend quota, otherwise defaults"; fi
		echo
		python3 - "$out/runs" "$rounds" "$(nproc)" "$nodes" "$mode" "${cells[@]}" <<'EOF'
import json, os, statistics, sys
runs_dir, rounds, cores, nodes, mode, cells = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6:]
cells = [c.split("|")[:2] for c in cells]

def load(sys_, cell):
    runs = []
    for r in range(1, rounds + 1):
        base = f"{runs_dir}/{sys_}-{cell}-r{r}"
        if not os.path.exists(base + ".res"):
            continue
        res = json.load(open(base + ".res"))
        try:
            j = json.load(open(base + ".json"))
        except ValueError:
            runs.append({"round": r, "failed": f"exit {res['rc']}, no result"})
            continue
        wall = res["wall_s"]
        srv = res["server_cpu_s"]
        runs.append({
            "round": r, "ops": j["ops_per_sec"], "p50": j["latency_ms"]["p50"], "p99": j["latency_ms"]["p99"],
            "srv": srv / wall, "gen": j.get("cpu_seconds", 0) / wall,
            # server CPU per operation, over the whole window (warmup ops estimated at the measured rate)
            "us_op": 1e6 * srv / (j["ops_per_sec"] * wall) if j["ops_per_sec"] else None,
            "rss": [k / 1024 for k in res["rss_kib"]], "errors": j["errors"], "requests": j["requests"],
            "status": j["status_errors"], "transport": j["transport_errors"],
            "failed": j.get("failure") if j.get("failed") else None,
        })
    return runs

def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None

systems = ["raftkv"] + (["etcd"] if any(os.path.exists(f"{runs_dir}/etcd-{c}-r1.res") for c, _ in cells) else [])
data = {(s, c): load(s, c) for s in systems for c, _ in cells}
f = lambda v, fmt: "—" if v is None else format(v, fmt)

print("| cell | raftkv ops/s | etcd ops/s | raftkv/etcd | raftkv p50 / p99 ms | etcd p50 / p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
for c, label in cells:
    a, b = data[("raftkv", c)], data.get(("etcd", c), [])
    oa, ob = med(a, "ops"), med(b, "ops")
    ratio = f"**{oa / ob:.2f}×**" if oa and ob else "—"
    la = f"{f(med(a, 'p50'), '.2f')} / {f(med(a, 'p99'), '.2f')}"
    lb = f"{f(med(b, 'p50'), '.2f')} / {f(med(b, 'p99'), '.2f')}" if b else "—"
    print(f"| {label} | {f(oa, ',.0f')} | {f(ob, ',.0f') if b else '—'} | {ratio} | {la} | {lb} |")
print()
print(f"Resources (medians; CPU in cores of the machine's {cores}, servers = all {nodes} nodes together, over the generator's whole run"
      " including warmup; µs/op = server CPU per operation; RSS of each node after the cell's last run).")
print()
print("| cell | system | server CPU | generator CPU | server CPU µs/op | RSS per node MiB |")
print("|---|---|---:|---:|---:|---|")
for c, label in cells:
    for s in systems:
        runs = data[(s, c)]
        last = next((r for r in reversed(runs) if "rss" in r), None)
        rss = " / ".join(f"{x:.0f}" for x in last["rss"]) if last else "—"
        print(f"| {label} | {s} | {f(med(runs, 'srv'), '.2f')} | {f(med(runs, 'gen'), '.2f')} | {f(med(runs, 'us_op'), ',.0f')} | {rss} |")
notes = []
for (s, c), runs in data.items():
    for r in runs:
        if r.get("failed") or r.get("errors"):
            what = r.get("failed") or ""
            if r.get("errors"):
                what = f"{r['errors']} of {r['requests']} requests failed; status {r['status']}, transport {r['transport']}" + (f" ({what})" if what else "")
            notes.append(f"- {s} {c} round {r['round']}: {what}")
if notes:
    print()
    print("Errors (raw output in runs/):")
    print("\n".join(notes))
if mode == "surface" and "etcd" in systems:
    ops = lambda s, c: med(data.get((s, c), []), "ops")
    print()
    print("Goals (ratios of the medians above):")
    print()
    print("| goal | raftkv | etcd | ratio | target | |")
    print("|---|---:|---:|---:|---:|---|")
    for c, what, other, target in [
        ("list-1000-c16", "list 1,000 keys: raftkv lists/s vs etcd ranges/s", "list-1000-c16", 2),
        ("count-c16", "count a prefix: raftkv counts/s vs etcd count_only ranges/s", "count-c16", 2),
        ("txn-c64", "transactions at c=64: raftkv txn/s vs etcd txn/s", "txn-c64", 1.5),
        ("txn-c64", "transactions at c=64: raftkv txn/s vs etcd plain writes/s", "writes-c64", 1.5),
    ]:
        a, b = ops("raftkv", c), ops("etcd", other)
        if a and b:
            r = a / b
            print(f"| {what} | {a:,.0f} | {b:,.0f} | {r:.2f}× | ≥ {target}× | {'met' if r >= target else '**missed**'} |")
        else:
            print(f"| {what} | {f(a, ',.0f')} | {f(b, ',.0f')} | — | ≥ {target}× | no result |")
EOF
	} | tee "$out/results.md"
}

# poll_snapshots SECONDS: every second, each node's last_snapshot_index.
poll_snapshots() {
	local _ i
	for _ in $(seq 1 "$1"); do
		for ((i = 0; i < nodes; i++)); do
			printf '%s n%d %s\n' "$(date +%s)" $((i + 1)) "$(curl -sf --max-time 1 "http://127.0.0.1:${rk_http[i]}/status" |
				python3 -c 'import json, sys; print(json.load(sys.stdin)["last_snapshot_index"])' 2>/dev/null || echo '?')"
		done
		sleep 1
	done
}

sustained() {
	start_raftkv RAFT_SNAPSHOT_THRESHOLD="$snapshot_threshold" RAFT_SNAPSHOT_INTERVAL=5s
	echo "sustained writes at c=64 for ${sustained_secs}s (snapshot threshold $snapshot_threshold, checked every 5 s)"
	poll_snapshots $((sustained_secs + 30)) >"$out/snapshots.txt" &
	local poller=$! c0 c1 t0 t1 rc=0
	pids+=("$poller")
	c0=$(cpu_ticks "${raftkv_pids[@]}") t0=$(now_ns)
	# Progress lines go to the terminal and to sustained.err.
	generate "$out/runs/sustained.json" >(tee "$out/runs/sustained.err" >&2) \
		-targets "$raftkv_urls" -c 64 -ratio 1 -d "${sustained_secs}s" -warmup 1s -json -progress=true || rc=$?
	t1=$(now_ns) c1=$(cpu_ticks "${raftkv_pids[@]}")
	sleep 1 # one more snapshot poll
	signal TERM "$poller"
	wait "$poller" 2>/dev/null || true
	forget "$poller"
	all_alive "${raftkv_pids[@]}"
	if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$out/runs/sustained.json" 2>/dev/null; then
		echo "the load generator produced no result (exit $rc); see $out/runs/sustained.err" >&2
		exit 3
	fi
	{
		echo "# raftkv sustained writes"
		echo
		header
		echo "- writes at c=64, 10,000 keys, 100 B values, round-robin over $nodes nodes; RAFT_SNAPSHOT_THRESHOLD=$snapshot_threshold, RAFT_SNAPSHOT_INTERVAL=5s"
		echo
		python3 - "$out/runs/sustained.json" "$out/snapshots.txt" "$(((c1 - c0) * 1000 / clk_tck))" "$(((t1 - t0) / 1000000))" "$(rss_kib "${raftkv_pids[@]}")" <<'EOF'
import json, statistics, sys
j = json.load(open(sys.argv[1]))
server_cpu, wall = int(sys.argv[3]) / 1000, int(sys.argv[4]) / 1000
rss = [int(x) / 1024 for x in sys.argv[5].split(",")]
ps = j["per_second"]
windows = [sum(ps[i:i + 10]) / 10 for i in range(0, len(ps) - 9, 10)]
first = windows[:6]
base = statistics.median(first) if first else 0

snaps = {}
for line in open(sys.argv[2]):
    _, node, idx = line.split()
    if idx != "?":
        snaps.setdefault(node, []).append(int(idx))
counts = {n: sum(1 for a, b in zip(v, v[1:]) if b != a) for n, v in sorted(snaps.items())}
last = {n: v[-1] for n, v in snaps.items()}

lat = j["latency_ms"]
print(f"{j['ok']:,} writes in {j['duration_s']:.0f} s: {j['ops_per_sec']:,.0f} ops/s, p50 {lat['p50']:.2f} ms, "
      f"p99 {lat['p99']:.2f} ms, p99.9 {lat['p99_9']:.2f} ms, max {lat['max']:.0f} ms; {j['errors']} errors")
print(f"CPU: servers {server_cpu / wall:.2f} cores, generator {j.get('cpu_seconds', 0) / wall:.2f} cores; "
      f"RSS after: {' / '.join(f'{x:.0f}' for x in rss)} MiB")
print("snapshots (each followed by a log compaction) seen during the run: " +
      ", ".join(f"{n} {c} (last index {last[n]:,})" for n, c in counts.items()))
print()
print(f"| window | ops/s | of the first minute's median ({base:,.0f} ops/s) |")
print("|---|---:|---:|")
for i, w in enumerate(windows):
    print(f"| {i * 10}–{i * 10 + 10} s | {w:,.0f} | {w / base:.0%} |" if base else f"| {i * 10}–{i * 10 + 10} s | {w:,.0f} | — |")
if len(ps) % 10:
    print(f"\n(the last {len(ps) % 10} s form no full window and are left out)")

zero = longest_zero = 0
for v in ps:
    zero = zero + 1 if v == 0 else 0
    longest_zero = max(longest_zero, zero)
worst = min(windows) / base if windows and base else 0
stall_ms = max(longest_zero * 1000, lat["max"])
min_snaps = min(counts.values()) if counts else 0
ok_windows, ok_stall, spans = worst >= 0.9, stall_ms <= 200, min_snaps >= 2
print()
print(f"- worst window: {worst:.0%} of the first minute's median (target ≥ 90%): {'ok' if ok_windows else 'MISSED'}")
print(f"- longest stall: {stall_ms:.0f} ms (longest request {lat['max']:.0f} ms; {longest_zero} whole seconds without a completed "
      f"write) (target ≤ 200 ms): {'ok' if ok_stall else 'MISSED'}")
print(f"- the run spans ≥ 2 snapshots on every node: {'yes' if spans else 'NO (run longer or lower BENCH_SNAPSHOT_THRESHOLD)'}")
verdict = "PASS" if ok_windows and ok_stall and spans else ("INCONCLUSIVE" if ok_windows and ok_stall else "FAIL")
print(f"\n**{verdict}**: every 10 s window ≥ 90% of the first minute's median; no stall > 200 ms")
sys.exit(0 if verdict == "PASS" else 1)
EOF
	} | tee "$out/sustained.md" || verdict=1
}

# watch_summary: one run's JSON as a progress line.
watch_summary() {
	python3 - "$1" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except ValueError:
    print("no result")
    sys.exit()
lat = j["event_latency"]
line = (f"{j['events_per_s']:,.0f} events/s, {j['writes_per_s']:,.0f} writes/s, ack→event p50 {lat['p50']:.2f} / p99 {lat['p99']:.2f} ms "
        f"(p99 by node: {' / '.join(format(l['p99'], '.0f') for l in j.get('event_latency_by_target') or [])}), "
        + (f"{j['kib_per_idle_watcher']:.1f} KiB per idle watcher, " if j.get("pids") else "") + f"complete {j['complete']}")
if j.get("failed"):
    line += f"; FAILED: {j['failure']}"
print(line)
EOF
}

# watchbench: the --watch cells, alternating raftkv and etcd, on one fresh
# cluster of each for the whole run.
watchbench() {
	local systems=(raftkv) have_etcd=false
	if command -v "$etcd_bin" >/dev/null; then
		have_etcd=true systems+=(etcd)
	else
		echo "etcd not found: apt-get install etcd-server to compare; measuring raftkv only"
	fi
	local load0
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	start_raftkv
	if $have_etcd; then start_etcd; fi
	local round sys name cell cells=(watch)
	if [[ $watch_rate =~ [1-9] ]]; then cells+=(watchrate); fi
	for round in $(seq 1 "$rounds"); do
		echo "round $round of $rounds (${duration} of writes per run; load $(cut -d' ' -f1-3 /proc/loadavg))"
		for cell in "${cells[@]}"; do
			for sys in "${systems[@]}"; do
				name=$sys-$cell-r$round
				local urls=$raftkv_urls kind=raftkv procs=("${raftkv_pids[@]}") rc=0 t0 t1 c0 c1
				if [[ $sys == etcd ]]; then urls=$etcd_urls kind=etcd procs=("${etcd_pids[@]}"); fi
				all_alive "${procs[@]}"
				c0=$(cpu_ticks "${procs[@]}") t0=$(now_ns)
				# Progress lines go to runs/NAME.err. A new prefix per round:
				# no watcher sees an earlier round's keys.
				# Memory per idle watcher only in round 1, on the fresh
				# clusters: after a round of writes the servers' heaps hold
				# that round's garbage and history, and the difference
				# measures the collector, not the watchers.
				# The equal-load cell: the puts paced to $watch_rate/s, on a
				# prefix of its own.
				local pids="" rate=0
				if ((round == 1)) && [[ $cell == watch ]]; then pids=$(IFS=,; echo "${procs[*]}"); fi
				if [[ $cell == watchrate ]]; then rate=$watch_rate; fi
				generate "$out/runs/$name.json" "$out/runs/$name.err" -workload watch -target-kind "$kind" -targets "$urls" \
					-watchers "$watchers" -c 16 -d "$duration" -rate "$rate" -prefix "$cell$round/" -json -progress=true -pids "$pids" || rc=$?
				t1=$(now_ns) c1=$(cpu_ticks "${procs[@]}")
				all_alive "${procs[@]}"
				printf '{"rc":%d,"wall_s":%d.%03d,"server_cpu_s":%d.%02d,"load":"%s"}\n' "$rc" \
					$(((t1 - t0) / 1000000000)) $(((t1 - t0) / 1000000 % 1000)) \
					$(((c1 - c0) / clk_tck)) $(((c1 - c0) % clk_tck * 100 / clk_tck)) "$(cut -d' ' -f1-3 /proc/loadavg)" >"$out/runs/$name.res"
				echo "  $sys ($cell): exit $rc; $(watch_summary "$out/runs/$name.json")"
			done
		done
	done
	{
		echo "# raftkv vs etcd: watches"
		echo
		header
		echo "- $rounds round(s), alternating raftkv and etcd; medians. $watchers watchers of one prefix (a new prefix each round), opened round-robin over all $nodes nodes of each system, idle until all are open; then puts of 100 B values (10,000 keys under the prefix) at c=16, round-robin over the nodes, for ${duration}."
		local etcd_version="not run"
		if $have_etcd; then etcd_version=$("$etcd_bin" --version | sed -n 1p); fi
		echo "- raftkv: GET /watch/{prefix} (Server-Sent Events). etcd: $etcd_version, its v3 JSON gateway's streaming POST /v3/watch (key + range_end; one JSON message per batch of events, keys and values in base64), puts through /v3/kv/put."
		if [[ $watch_rate =~ [1-9] ]]; then echo "- The equal-load cell: the same, on a prefix of its own, with the puts paced to $watch_rate per second over the 16 writers (raftkv-bench -rate $watch_rate), the same offered load for both systems."; fi
		echo "- 1-minute load average (1, 5, 15 min): $load0 before starting the clusters, $(cut -d' ' -f1-3 /proc/loadavg) after the last run; per run below."
		echo
		python3 - "$out/runs" "$rounds" "$watchers" "$(nproc)" "$watch_rate" <<'EOF'
import json, os, statistics, sys
runs_dir, rounds, watchers, cores, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

def load(s, cell="watch"):
    out = []
    for r in range(1, rounds + 1):
        base = f"{runs_dir}/{s}-{cell}-r{r}"
        if not os.path.exists(base + ".res"):
            continue
        res = json.load(open(base + ".res"))
        try:
            j = json.load(open(base + ".json"))
        except ValueError:
            out.append({"round": r, "failed": f"exit {res['rc']}, no result (see runs/{s}-{cell}-r{r}.err)"})
            continue
        lat = j["event_latency"]
        out.append({"round": r, "ev": j["events_per_s"], "p999": lat["p99_9"], "max": lat["max"], "ev_all": j["events_per_s_with_drain"], "wr": j["writes_per_s"],
                    "p50": lat["p50"], "p99": lat["p99"], "kib": j["kib_per_idle_watcher"] if j.get("pids") else None,
                    "p99_nodes": " / ".join(format(l["p99"], ".0f") for l in j.get("event_latency_by_target") or []),
                    "settled": j["rss_settled"], "drain": j["drain_ms"], "complete": j["complete"],
                    "srv": res["server_cpu_s"] / res["wall_s"], "gen": j["cpu_seconds"] / res["wall_s"], "load": res["load"],
                    "cpu_kev": 1e6 * res["server_cpu_s"] / j["events"] if j["events"] else None,
                    "failed": j.get("failure") if j.get("failed") else None, "problems": j.get("problems") or []})
    return out

def med(runs, k):
    v = [r[k] for r in runs if r.get(k) is not None and not r.get("failed")]
    return statistics.median(v) if v else None

systems = ["raftkv"] + (["etcd"] if os.path.exists(f"{runs_dir}/etcd-watch-r1.res") else [])
data = {s: load(s) for s in systems}
a, b = data["raftkv"], data.get("etcd", [])
f = lambda v, fmt: "—" if v is None else format(v, fmt)

def ratio(x, y, bold=True):
    if not x or not y:
        return "—"
    return f"**{x / y:.2f}×**" if bold else f"{x / y:.2f}×"

print(f"| watch cell ({watchers:,} watchers of one prefix, writes at c=16) | raftkv | etcd | raftkv/etcd |")
print("|---|---:|---:|---:|")
print(f"| events delivered per second while writing (all watchers) | {f(med(a, 'ev'), ',.0f')} | {f(med(b, 'ev'), ',.0f')} | {ratio(med(a, 'ev'), med(b, 'ev'))} |")
print(f"| the same, counted to the last delivery (writing + drain) | {f(med(a, 'ev_all'), ',.0f')} | {f(med(b, 'ev_all'), ',.0f')} | {ratio(med(a, 'ev_all'), med(b, 'ev_all'), False)} |")
print(f"| puts acknowledged per second meanwhile | {f(med(a, 'wr'), ',.0f')} | {f(med(b, 'wr'), ',.0f')} | {ratio(med(a, 'wr'), med(b, 'wr'), False)} |")
print(f"| put acknowledged → event received, p50 / p99 ms | {f(med(a, 'p50'), '.2f')} / {f(med(a, 'p99'), '.2f')} | {f(med(b, 'p50'), '.2f')} / {f(med(b, 'p99'), '.2f')} | p99 {ratio(med(b, 'p99'), med(a, 'p99'), False)} lower |")
print(f"| last event received after the writes ended, ms | {f(med(a, 'drain'), ',.0f')} | {f(med(b, 'drain'), ',.0f')} | |")
print(f"| memory per idle watcher, KiB (all nodes' RSS; round 1, fresh clusters) | {f(med(a, 'kib'), '.1f')} | {f(med(b, 'kib'), '.1f')} | {ratio(med(b, 'kib'), med(a, 'kib'), False)} less |")
print(f"| server CPU per 1,000 events delivered, ms (all nodes, the whole run) | {f(med(a, 'cpu_kev'), '.1f')} | {f(med(b, 'cpu_kev'), '.1f')} | {ratio(med(b, 'cpu_kev'), med(a, 'cpu_kev'), False)} less |")
print(f"| server CPU / generator CPU, cores of {cores} (over each whole run, settles included) | {f(med(a, 'srv'), '.2f')} / {f(med(a, 'gen'), '.2f')} | {f(med(b, 'srv'), '.2f')} / {f(med(b, 'gen'), '.2f')} | |")
print()
print("Per run (events/s while writing, writes/s, put → event p50 / p99 ms and the p99 of each node's watchers, KiB per idle watcher, every event to every watcher, load after):")
print()
def per_run(data, label):
    for s in systems:
        for r in data[s]:
            if "ev" not in r:
                print(f"- {s}{label} r{r['round']}: {r['failed']}")
                continue
            mem = "—" if r["kib"] is None else f"{r['kib']:.1f}" + ("" if r["settled"] else " (memory NOT settled)")
            print(f"- {s}{label} r{r['round']}: {r['ev']:,.0f}, {r['wr']:,.0f}, {r['p50']:.2f} / {r['p99']:.2f} (nodes {r['p99_nodes']}), {mem}, "
                  f"{'complete' if r['complete'] else 'INCOMPLETE'}, load {r['load']}" + (f"; FAILED: {r['failed']}" if r.get("failed") else ""))
            for p in r["problems"][:3]:
                print(f"  - {p}")
per_run(data, "")

# The equal-load cell: both systems offered the same puts per second.
rdata = {s: load(s, "watchrate") for s in systems} if rate > 0 else {}
ra, rb = rdata.get("raftkv", []), rdata.get("etcd", [])
if ra or rb:
    print()
    print(f"| equal-load cell ({watchers:,} watchers, puts paced to {rate:g}/s over 16 writers) | raftkv | etcd | raftkv/etcd |")
    print("|---|---:|---:|---:|")
    print(f"| puts acknowledged per second (offered: {rate:g}) | {f(med(ra, 'wr'), ',.1f')} | {f(med(rb, 'wr'), ',.1f')} | |")
    print(f"| events delivered per second while writing (offered: {rate * watchers:,.0f}) | {f(med(ra, 'ev'), ',.0f')} | {f(med(rb, 'ev'), ',.0f')} | |")
    print(f"| put acknowledged → event received, p50 / p99 ms | {f(med(ra, 'p50'), '.2f')} / {f(med(ra, 'p99'), '.2f')} | {f(med(rb, 'p50'), '.2f')} / {f(med(rb, 'p99'), '.2f')} | p99 {ratio(med(rb, 'p99'), med(ra, 'p99'), False)} lower |")
    print(f"| the same, p99.9 / max ms | {f(med(ra, 'p999'), '.2f')} / {f(med(ra, 'max'), '.2f')} | {f(med(rb, 'p999'), '.2f')} / {f(med(rb, 'max'), '.2f')} | |")
    print(f"| last event received after the writes ended, ms | {f(med(ra, 'drain'), ',.0f')} | {f(med(rb, 'drain'), ',.0f')} | |")
    print(f"| server CPU per 1,000 events delivered, ms (all nodes, the whole run) | {f(med(ra, 'cpu_kev'), '.1f')} | {f(med(rb, 'cpu_kev'), '.1f')} | {ratio(med(rb, 'cpu_kev'), med(ra, 'cpu_kev'), False)} less |")
    print(f"| server CPU / generator CPU, cores of {cores} (over each whole run) | {f(med(ra, 'srv'), '.2f')} / {f(med(ra, 'gen'), '.2f')} | {f(med(rb, 'srv'), '.2f')} / {f(med(rb, 'gen'), '.2f')} | |")
    print()
    print("Per run of the equal-load cell (the same fields):")
    print()
    per_run(rdata, f" @{rate:g}/s")
ev_a, ev_b, p99 = med(a, "ev"), med(b, "ev"), med(a, "p99")
print()
print("| goal | measured | |")
print("|---|---:|---|")
if ev_a and ev_b:
    print(f"| raftkv delivers ≥ 2× etcd's events/s | {ev_a / ev_b:.2f}× | {'met' if ev_a / ev_b >= 2 else '**missed**'} |")
else:
    print("| raftkv delivers ≥ 2× etcd's events/s | — | no result |")
print(f"| raftkv put → event p99 < 50 ms (c=16, each system saturated) | {f(p99, '.2f')} ms | {'—' if p99 is None else ('met' if p99 < 50 else '**missed**')} |")
if ra or rb:
    rp99 = med(ra, "p99")
    print(f"| raftkv put → event p99 < 50 ms at the same offered load as etcd ({rate:g} puts/s; etcd's p99 {f(med(rb, 'p99'), '.2f')} ms) | {f(rp99, '.2f')} ms | {'—' if rp99 is None else ('met' if rp99 < 50 else '**missed**')} |")
EOF
	} | tee "$out/results.md"
}

# Not called as "f || ...": that would switch off errexit inside them.
verdict=0
if [[ $mode == sustained ]]; then sustained; elif [[ $mode == watch ]]; then watchbench; else matrix; fi # matrix, scale, surface
echo "results in $out"
exit "$verdict"
