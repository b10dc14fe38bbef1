#!/usr/bin/env bash
# Run moodbgm locally in the background: Redis (if none answers), one Celery worker on every queue and
# the API + web form on 127.0.0.1:8000. Pid files and logs go to .run/; stop with services/scripts/down.sh.
# Settings come from MOODBGM_* variables (e.g. MOODBGM_DATA_DIR, MOODBGM_STT_MODEL); HOST, PORT and
# WORKER_CONCURRENCY set where the API listens and how many worker processes run.
# API key: unless MOODBGM_API_KEYS or MOODBGM_AUTH is set, a local admin key is made once, kept in
# .run/api-key (mode 600) and printed; the web form asks for it once, `moodbgm submit` reads
# MOODBGM_API_KEY.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=.run
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
MOODBGM=.venv/bin/moodbgm
[ -x "$MOODBGM" ] || MOODBGM=$(command -v moodbgm) || { echo "moodbgm is not installed (run make setup)" >&2; exit 1; }
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkdir -p "$RUN"
bash services/scripts/ensure-redis.sh

KEY=""
if [ -z "${MOODBGM_API_KEYS:-}" ] && [ -z "${MOODBGM_AUTH:-}" ]; then
  if [ ! -s "$RUN/api-key" ]; then
    (umask 077 && "$PY" -c "import secrets; print(secrets.token_urlsafe(32))" >"$RUN/api-key")
    echo "made a local API key in $RUN/api-key"
  fi
  KEY=$(cat "$RUN/api-key")
  export MOODBGM_API_KEYS="[{\"key\": \"$KEY\", \"role\": \"admin\"}]"
fi

start() {  # name command...: in its own session (process group), so down.sh stops it with its children
  local name=$1; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$RUN/$name.pid"))"; return
  fi
  setsid "$@" >>"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
  echo "started $name (pid $!, log $RUN/$name.log)"
}

start worker "$MOODBGM" worker --queues media,stt,nlp,generate --concurrency "${WORKER_CONCURRENCY:-1}"
start api "$MOODBGM" serve --host "$HOST" --port "$PORT"

for _ in $(seq 150); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://$HOST:$PORT/readyz', timeout=1)" 2>/dev/null; then
    echo "moodbgm is up: http://$HOST:$PORT/ (API docs at /docs)"
    if [ -n "$KEY" ]; then
      echo "API key (admin; also in $RUN/api-key): $KEY"
      echo "  curl -H 'Authorization: Bearer $KEY' http://$HOST:$PORT/api/v1/jobs"
      echo "  MOODBGM_API_URL=http://$HOST:$PORT MOODBGM_API_KEY=\$(cat $RUN/api-key) moodbgm submit VIDEO --wait -o out/"
    fi
    exit 0
  fi
  kill -0 "$(cat "$RUN/api.pid")" 2>/dev/null || { echo "the API exited; see $RUN/api.log" >&2; exit 1; }
  sleep 0.2
done
echo "the API did not become ready in 30 s; see $RUN/api.log" >&2
exit 1
