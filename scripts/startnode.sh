#!/usr/bin/env bash
# Start raftkv node N (1, 2 or 3) in the foreground with the seed's
# environment. Node 1 bootstraps the cluster; nodes 2 and 3 wait to be joined.
#
# Usage: startnode.sh N [--clean]
#   --clean          wipe the node's raft volume before starting
# Environment:
#   RAFTKV_BIN       run this binary instead of <repo>/bin/raftkv (never builds)
#   RAFTKV_REBUILD=1 rebuild <repo>/bin/raftkv even if it exists
# Any other variables (LOG_LEVEL, LOG_FORMAT, ...) are passed through.
set -euo pipefail

usage() {
	echo "usage: $(basename "$0") N [--clean]   (N is 1, 2 or 3)" >&2
	exit 2
}

[[ $# -ge 1 ]] || usage
node=$1
shift
[[ $node =~ ^[123]$ ]] || usage

clean=false
for arg in "$@"; do
	case $arg in
	--clean) clean=true ;;
	*) usage ;;
	esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

export HTTP_SERVER_PORT=$((8000 + node - 1))
export RAFT_SERVER_PORT=$((9000 + node - 1))
export RAFT_NODE_ID="n${node}"
export RAFT_VOLUME_DIR="/tmp/node${node}"
if [[ $node == 1 ]]; then
	export RAFT_BOOTSTRAP=true
else
	export RAFT_BOOTSTRAP=false
fi

echo "Starting node${node}"

if [[ $clean == true ]]; then
	echo "Cleaning the raft volume ${RAFT_VOLUME_DIR}."
	rm -rf -- "${RAFT_VOLUME_DIR:?}"
fi

build() {
	local bin=$1
	mkdir -p "$(dirname "$bin")"
	# The three start scripts are often launched together; the lock makes
	# only the first one build and the others reuse its result.
	exec 9>"$repo/bin/.build.lock"
	flock 9
	if [[ ! -x $bin || ${RAFTKV_REBUILD:-} == 1 ]]; then
		echo "Building $bin"
		(cd "$repo" && go build -o bin/raftkv ./cmd/raftkv)
	fi
	flock -u 9
	exec 9>&-
}

if [[ -n ${RAFTKV_BIN:-} ]]; then
	bin=$RAFTKV_BIN
else
	bin="$repo/bin/raftkv"
	if [[ ! -x $bin || ${RAFTKV_REBUILD:-} == 1 ]]; then
		build "$bin"
	fi
fi

exec "$bin"
