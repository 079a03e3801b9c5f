#!/usr/bin/env bash
# Baseline: run the conformance suite against CNCF distribution 2.8 (Debian package docker-registry).
#
#   tests/conformance/run-distribution.sh [report-dir]
#
# Starts `docker-registry serve` on a free 127.0.0.1 port with filesystem storage in a temp dir and
# deletes enabled, runs tests/conformance/run.sh against it, stops it and removes the temp dir.
# Exit status: run.sh's (distribution 2.8 is expected to fail some OCI 1.1 checks: see README.md).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REGISTRY_BIN="${DOCKER_REGISTRY_BIN:-/usr/bin/docker-registry}"
[ -x "$REGISTRY_BIN" ] || { echo "conformance: ERROR: $REGISTRY_BIN missing (apt-get install docker-registry)" >&2; exit 2; }

tmp="$(mktemp -d)"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
cat >"$tmp/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
"$REGISTRY_BIN" serve "$tmp/config.yml" >"$tmp/registry.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/registry.log" >&2; echo "conformance: ERROR: docker-registry exited" >&2; exit 1; }
  sleep 0.1
done
echo "conformance: $("$REGISTRY_BIN" --version 2>&1) on 127.0.0.1:$port" >&2

rc=0
"$HERE/run.sh" "http://127.0.0.1:$port" "${OCI_NAMESPACE:-conformance/main}" "$@" || rc=$?
exit "$rc"
