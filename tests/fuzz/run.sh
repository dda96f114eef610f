#!/usr/bin/env bash
# Fuzzes a running Coffer from its own OpenAPI document with schemathesis, signed in as a user
# and as an admin, and anonymously. Exits non-zero on any failure. Every check runs;
# positive_data_acceptance (schema-valid requests are not refused as malformed) takes the
# statuses in tests/fuzz/schemathesis.toml as acceptance, since Coffer refuses (422) values
# JSON Schema cannot describe — a weak password, an address that is not one, an expiry in the
# past, an empty change — and says why (docs/TESTING.md).
#
#   tests/fuzz/run.sh [MAX_EXAMPLES]      (.ci/run: 20; docs/TESTING.md records a longer run)
#
# COFFER_BIN picks the binary (default: the debug build in CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/../.."

max_examples=${1:-20}
bin=${COFFER_BIN:-${CARGO_TARGET_DIR:-target}/debug/coffer}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin_email=fuzz-admin@example.org
admin_password='fuzzing admin password'

# Single sign-on against the real OpenID provider the e2e tests use (`npm ci` in tests/oidc),
# so that its routes are fuzzed as they run: the start answers 303 to the provider, the
# callback refuses what it was not sent.
coproc PROVIDER { cd tests/oidc && exec node provider.mjs 2>"$data/provider.log"; }
provider_pid=$PROVIDER_PID
read -r said <&"${PROVIDER[0]}"
issuer=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["issuer"])' "$said")
curl -sf -X POST "$issuer/__test/client" -H 'content-type: application/json' \
  -d "{\"redirect_uris\":[\"$base/api/v1/auth/oidc/callback\"],\"post_logout_redirect_uris\":[\"$base/app/signin\"]}"

COFFER_DATA_DIR="$data" COFFER_BIND="127.0.0.1:$port" COFFER_LOG=warn \
  COFFER_ADMIN_EMAIL="$admin_email" COFFER_ADMIN_PASSWORD="$admin_password" \
  COFFER_OIDC_ISSUER="$issuer" COFFER_OIDC_CLIENT_ID=coffer \
  COFFER_OIDC_CLIENT_SECRET=coffer-oidc-test-secret COFFER_OIDC_JIT=true \
  "$bin" serve >"$data/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" "$provider_pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

deadline=$((SECONDS + 60))
until curl -sf "$base/healthz" >/dev/null; do
  if ((SECONDS >= deadline)); then
    echo "coffer did not start:" >&2
    cat "$data/serve.log" >&2
    exit 1
  fi
  sleep 0.2
done

token() { # token <email> <password>
  curl -sf "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
curl -sf "$base/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"fuzz-user@example.org","password":"fuzzing user password"}' >/dev/null
user_token=$(token fuzz-user@example.org 'fuzzing user password')
admin_token=$(token "$admin_email" "$admin_password")
# Something to find: a ready file of the user's.
curl -sf -X PUT "$base/api/v1/files/seed.txt" -H "authorization: Bearer $user_token" \
  --data-binary 'fuzzing seed' >/dev/null

run() { # run <who> [schemathesis options…]
  local who=$1
  shift
  echo "==> schemathesis as $who"
  schemathesis --config-file tests/fuzz/schemathesis.toml run "$base/openapi.json" \
    --checks all \
    --max-examples "$max_examples" \
    --workers 1 \
    --request-timeout 30 \
    --suppress-health-check all \
    --seed 20261202 \
    "$@"
}

status=0
# Logging out would end the session the rest of the run uses: it is fuzzed anonymously only.
run user -H "Authorization: Bearer $user_token" --exclude-path /api/v1/auth/logout || status=1
run admin -H "Authorization: Bearer $admin_token" --exclude-path /api/v1/auth/logout || status=1
run anonymous || status=1
if grep -q "panicked" "$data/serve.log"; then
  echo "the service panicked:" >&2
  grep -A5 panicked "$data/serve.log" >&2
  status=1
fi
if ((status != 0)); then
  # A 500 names an error id; the service's log says what it was.
  echo "==> the service's warnings and errors (the log goes with the data directory)" >&2
  grep -a -E ' (WARN|ERROR) ' "$data/serve.log" | tail -n 50 >&2 || true
fi
exit $status
