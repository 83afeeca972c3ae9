#!/usr/bin/env bash
# Start raftkv node N (1, 2 or 3) in the foreground with the seed's
# environment. Node 1 bootstraps the cluster; nodes 2 and 3 wait to be joined.
#
# Usage: startnode.sh N [--clean]
#   --clean          wipe the node's raft volume before starting
# Environment:
#   HTTP_SERVER_PORT, RAFT_SERVER_PORT, RAFT_NODE_ID, RAFT_VOLUME_DIR and
#   (nodes 2 and 3) RAFT_BOOTSTRAP: the values below are defaults only;
#   exported values win.
#   RAFTKV_BIN       run this binary instead of <repo>/bin/raftkv (never builds)
# Without RAFTKV_BIN, <repo>/bin/raftkv is rebuilt (go build is incremental,
# so an up-to-date binary costs a moment) before every start.
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

export HTTP_SERVER_PORT=${HTTP_SERVER_PORT:-$((8000 + node - 1))}
export RAFT_SERVER_PORT=${RAFT_SERVER_PORT:-$((9000 + node - 1))}
export RAFT_NODE_ID=${RAFT_NODE_ID:-n${node}}
export RAFT_VOLUME_DIR=${RAFT_VOLUME_DIR:-/tmp/node${node}}
# Node 1 keeps raftkv's own default (bootstrap unless RAFT_JOIN or
# RAFT_BOOTSTRAP_EXPECT is set); nodes 2 and 3 wait to be joined.
if [[ $node != 1 ]]; then
	export RAFT_BOOTSTRAP=${RAFT_BOOTSTRAP:-false}
fi

echo "Starting node${node}: RAFT_NODE_ID=$RAFT_NODE_ID HTTP_SERVER_PORT=$HTTP_SERVER_PORT RAFT_SERVER_PORT=$RAFT_SERVER_PORT RAFT_VOLUME_DIR=$RAFT_VOLUME_DIR"

if [[ $clean == true ]]; then
	echo "Cleaning the raft volume ${RAFT_VOLUME_DIR}."
	rm -rf -- "${RAFT_VOLUME_DIR:?}"
fi

build() {
	local bin=$1
	mkdir -p "$(dirname "$bin")"
	# The three start scripts are often launched together; the lock makes
	# them build one at a time, so the first one builds and the others
	# find the binary up to date (go build is incremental).
	exec 9>"$repo/bin/.build.lock"
	flock 9
	(cd "$repo" && go build -o bin/raftkv ./cmd/raftkv)
	flock -u 9
	exec 9>&-
}

if [[ -n ${RAFTKV_BIN:-} ]]; then
	bin=$RAFTKV_BIN
else
	bin="$repo/bin/raftkv"
	build "$bin"
fi

exec "$bin"
