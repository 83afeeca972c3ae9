#!/usr/bin/env bash
# Send COUNT sequential set requests (key=i, value=i) to a raftkv node.
#
# Usage: pump.sh [COUNT] [URL]   (defaults: 100 http://localhost:8000)
# Exits non-zero if any request did not return a 2xx status.
set -euo pipefail

count=${1:-100}
url=${2:-http://localhost:8000}
url=${url%/}

if ! [[ $count =~ ^[0-9]+$ ]] || ((10#$count == 0)); then
	echo "usage: $(basename "$0") [COUNT] [URL]   (COUNT is a positive integer)" >&2
	exit 2
fi
count=$((10#$count))

ok=0
failed=0
for ((i = 1; i <= count; i++)); do
	# curl prints 000 on connection errors; "|| true" keeps set -e from
	# aborting so the failure is counted instead.
	code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$url/set?key=$i&value=$i" || true)
	if [[ $code == 2[0-9][0-9] ]]; then
		ok=$((ok + 1))
	else
		failed=$((failed + 1))
	fi
	if ((count > 100 && i % 100 == 0)); then
		echo "$i/$count sent ($failed failed so far)"
	fi
done

echo "$ok ok, $failed failed"
[[ $failed -eq 0 ]] || exit 1
