#!/usr/bin/env bash
exec "$(dirname "$0")/startnode.sh" 2 "$@"
