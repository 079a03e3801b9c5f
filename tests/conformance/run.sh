#!/usr/bin/env bash
# Run the OCI distribution-spec conformance suite (built by build.sh) against a registry.
#
#   tests/conformance/run.sh <registry-url> <namespace> [report-dir]
#   e.g. tests/conformance/run.sh http://127.0.0.1:5000 conformance/main
#
# Runs all four workflows (pull, push, content discovery, content management). Any OCI_* variable
# already set in the environment wins over the defaults below (e.g. OCI_USERNAME/OCI_PASSWORD,
# OCI_AUTOMATIC_CROSSMOUNT=0|1, OCI_SKIP_EMPTY_LAYER_PUSH_TEST=1, OCI_DEBUG=1, OCI_TEST_PUSH=0 ...).
#
# Writes <report-dir>/{junit.xml,report.html,output.txt,summary.txt}
# (default report dir: .cache/conformance/reports/<UTC timestamp>) and ends with the line
#   conformance: N passed, N failed, N skipped
# Exit status: the suite's (0 only when every spec that ran passed); 2 on usage errors.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${CONFORMANCE_CACHE_DIR:-$ROOT/.cache/conformance}"
BIN="${CONFORMANCE_BIN:-$CACHE/conformance.test}"

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 <registry-url> <namespace> [report-dir]" >&2
  exit 2
fi
URL="${1%/}"; NS="$2"
REPORT_DIR="${3:-$CACHE/reports/$(date -u +%Y%m%dT%H%M%SZ)}"

[ -x "$BIN" ] || { echo "conformance/run: ERROR: $BIN not built; run tests/conformance/build.sh first" >&2; exit 2; }
case "$URL" in http://*|https://*) ;; *) echo "conformance/run: ERROR: registry-url must start with http:// or https:// (got $URL)" >&2; exit 2;; esac
mkdir -p "$REPORT_DIR"; REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"

export OCI_ROOT_URL="$URL"
export OCI_NAMESPACE="$NS"
export OCI_CROSSMOUNT_NAMESPACE="${OCI_CROSSMOUNT_NAMESPACE:-$NS-crossmount}"
export OCI_TEST_PULL="${OCI_TEST_PULL:-1}"
export OCI_TEST_PUSH="${OCI_TEST_PUSH:-1}"
export OCI_TEST_CONTENT_DISCOVERY="${OCI_TEST_CONTENT_DISCOVERY:-1}"
export OCI_TEST_CONTENT_MANAGEMENT="${OCI_TEST_CONTENT_MANAGEMENT:-1}"
export OCI_DELETE_MANIFEST_BEFORE_BLOBS="${OCI_DELETE_MANIFEST_BEFORE_BLOBS:-1}"
export OCI_HIDE_SKIPPED_WORKFLOWS="${OCI_HIDE_SKIPPED_WORKFLOWS:-0}"
export OCI_DEBUG="${OCI_DEBUG:-0}"
export OCI_REPORT_DIR="$REPORT_DIR"
# Left to the caller when set (the suite treats "unset" and "0" differently for some of them):
# OCI_USERNAME OCI_PASSWORD OCI_AUTH_SCOPE OCI_AUTOMATIC_CROSSMOUNT OCI_SKIP_EMPTY_LAYER_PUSH_TEST
# OCI_TAG_NAME OCI_MANIFEST_DIGEST OCI_BLOB_DIGEST OCI_TAG_LIST

echo "conformance/run: $BIN against $OCI_ROOT_URL namespace=$OCI_NAMESPACE crossmount=$OCI_CROSSMOUNT_NAMESPACE" >&2
echo "conformance/run: reports in $REPORT_DIR" >&2
env | grep '^OCI_' | grep -v '^OCI_PASSWORD=' | sort >"$REPORT_DIR/env.txt"

rc=0
# The binary writes junit.xml/report.html relative to OCI_REPORT_DIR; run it from there so nothing lands
# in the caller's directory.
(cd "$REPORT_DIR" && "$BIN" -test.v -ginkgo.no-color ${CONFORMANCE_GINKGO_ARGS:-}) \
  >"$REPORT_DIR/output.txt" 2>&1 || rc=$?

# Summary: ginkgo's closing lines, e.g. "FAIL! -- 62 Passed | 12 Failed | 0 Pending | 5 Skipped"
line="$(grep -E '[0-9]+ Passed \| [0-9]+ Failed' "$REPORT_DIR/output.txt" | tail -1 || true)"
{
  grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$REPORT_DIR/output.txt" | tail -1 || true
  if grep -q '^Summarizing [0-9]* Failure' "$REPORT_DIR/output.txt"; then
    echo "Failed specs:"
    grep -E '^\s+\[FAIL\] ' "$REPORT_DIR/output.txt" | sed -E 's/^\s+\[FAIL\] OCI Distribution Conformance Tests /  - /' || true
  fi
  if [ -n "$line" ]; then
    passed="$(sed -E 's/.* ([0-9]+) Passed.*/\1/' <<<"$line")"
    failed="$(sed -E 's/.* ([0-9]+) Failed.*/\1/' <<<"$line")"
    skipped="$(sed -E 's/.* ([0-9]+) Skipped.*/\1/' <<<"$line")"
    echo "conformance: $passed passed, $failed failed, $skipped skipped"
  else
    echo "conformance/run: ERROR: the suite printed no summary (exit $rc); last lines of output.txt:"
    tail -30 "$REPORT_DIR/output.txt"
  fi
} >"$REPORT_DIR/summary.txt"
cat "$REPORT_DIR/summary.txt"
if [ -z "$line" ] && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
