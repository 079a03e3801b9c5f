#!/usr/bin/env bash
# Run the OCI conformance suite against Dockyard's registry as it is deployed: a real
# `python -m dockyard.registry serve` process (anonymous access, filesystem storage in a temp dir)
# on a free loopback port.
#
#   tests/conformance/run-dockyard.sh [report-dir]
#
# `make test` and `make conformance` run it after tests/conformance/build.sh. All four workflows
# run, with automatic cross-mount expected on (anonymous callers may pull every repository). Prints
# run.sh's summary, ending with "conformance: N passed, N failed, N skipped".
# Exit status: run.sh's (0 only when every spec that ran passed); 1 when the registry did not start.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON_BIN:-$ROOT/.venv/bin/python}"

tmp="$(mktemp -d)"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT

port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
# No NATS here: the registry's events wait in its outbox (in the temp dir), which is what it does
# whenever NATS is away.
"$PY" -m dockyard.registry serve --host 127.0.0.1 --port "$port" --state-dir "$tmp/registry" \
  --grpc-listen "unix:$tmp/registry.sock" --nats-url nats://127.0.0.1:9 >"$tmp/registry.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { tail -20 "$tmp/registry.log" >&2; echo "conformance: ERROR: dockyard-registry exited" >&2; exit 1; }
  sleep 0.1
done
echo "conformance: dockyard-registry (pid $pid) on 127.0.0.1:$port" >&2

rc=0
OCI_AUTOMATIC_CROSSMOUNT="${OCI_AUTOMATIC_CROSSMOUNT:-1}" \
  "$HERE/run.sh" "http://127.0.0.1:$port" "${OCI_NAMESPACE:-conformance/main}" "$@" || rc=$?
if [ "$rc" != 0 ]; then
  echo "conformance: the registry's log (last 20 lines of $tmp/registry.log):" >&2
  tail -20 "$tmp/registry.log" >&2
fi
exit "$rc"
