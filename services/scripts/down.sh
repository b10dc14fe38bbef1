#!/usr/bin/env bash
# Stop what services/scripts/up.sh started (API, then the worker: SIGTERM = Celery warm shutdown, so a
# running stage may finish; SIGKILL after 60 s). Redis is left running.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=.run
stop() {
  local name=$1 pidfile="$RUN/$1.pid"
  [ -f "$pidfile" ] || { echo "$name: not running"; return; }
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name did not stop in 60 s; killing it"; kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    fi
    echo "stopped $name (pid $pid)"
  else
    echo "$name: not running (stale pid file)"
  fi
  rm -f "$pidfile"
}
stop api
stop worker
