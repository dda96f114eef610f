#!/usr/bin/env bash
# The benchmark harness in one command: measures the machine's limits, then Coffer's release
# binary against them (big files, small requests under load, upload-to-ready latency, logins
# during a download, key rotation, audit verification, keys in an HSM against a keyring file,
# cost at 1M files / 5M shares / 20M audit events) and against the reference Flask app
# (../shared/reference/flask-seed/, when it is there), and rewrites the results section of
# BENCHMARKS.md. Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 (started here
# when installed but down) and wrk (installed here from Debian when missing). About 45 minutes
# plus the release build (the scale section is most of it); big files and the SQLite store go to
# $COFFER_BENCH_DIR (default: the system temp dir, about 20 GB free needed).
#   bench/run.sh                 everything, then BENCHMARKS.md
#   bench/run.sh --quick small   a smoke run of some sections, printed only
#   bench/run.sh --topology postgres scale   one section on one topology, printed only
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  apt-get install -y -qq wrk >/dev/null
fi
# The kms section keeps master keys in a SoftHSM2 token, its key made with OpenSC's pkcs11-tool.
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null; then
  apt-get install -y -qq softhsm2 opensc >/dev/null
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi

if [ $# -eq 0 ]; then
  exec cargo bench --locked --bench harness -- --write BENCHMARKS.md
else
  exec cargo bench --locked --bench harness -- "$@"
fi
