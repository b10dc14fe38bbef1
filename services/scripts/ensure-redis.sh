#!/usr/bin/env bash
# Start a local Redis on 127.0.0.1:6379 unless one answers already (tests and `make up` use it).
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then exit 0; fi
echo "starting redis-server on 127.0.0.1:6379"
mkdir -p /tmp/moodbgm-redis
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /tmp/moodbgm-redis --logfile /tmp/moodbgm-redis/redis.log
for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.1; done
echo "redis did not start; see /tmp/moodbgm-redis/redis.log" >&2; exit 1
