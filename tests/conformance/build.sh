#!/usr/bin/env bash
# Build the OCI distribution-spec conformance suite (a Go test binary) from Debian packages
# plus two pinned source tarballs, without touching any Go module proxy.
#
#   tests/conformance/build.sh                 -> .cache/conformance/conformance.test
#   tests/conformance/build.sh --sources-only  -> the two pinned tarballs, found or fetched and checked
#
# Idempotent and cached: re-running re-checks the toolchain and packages (no-op when present) and
# exits at once when the binary was built from the same inputs (stamp beside it); otherwise it
# re-extracts the sources into a clean GOPATH and rebuilds (the Go build cache makes that a few s).
#
# Needs:
#   * Go >= 1.23 (Debian bookworm-backports golang-1.23-go; installed here when running as root)
#   * Go libraries as Debian golang-*-dev packages (GOPATH mode, GO111MODULE=off)
#   * source tarballs (Debian does not package distribution-spec's conformance/ nor reggie):
#       $CONFORMANCE_SRC_DIR (default .cache/conformance/src)/distribution-spec-v1.1.1.tar.gz
#       $CONFORMANCE_SRC_DIR (default .cache/conformance/src)/reggie-v0.6.1.tar.gz
#     or, instead of the tarballs, bare/normal git repositories of those projects via
#       DIST_SPEC_GIT_DIR=/path/to/distribution-spec.git REGGIE_GIT_DIR=/path/to/reggie.git
#     (build.sh then writes the tarballs itself with `git archive`), or the same tarballs in
#     ../shared/conformance/src/ beside the repo (copied in), or else fetched from GitHub at the
#     pinned commits (tree hash checked; CONFORMANCE_OFFLINE=1 never fetches). See tests/conformance/README.md.
#
# Exit status: 0 when the binary is built; non-zero with a message saying what is missing.
set -euo pipefail

DIST_SPEC_TAG=v1.1.1
DIST_SPEC_COMMIT=a139cc423184af6078077b9b7ee336eddbd03f8f
REGGIE_TAG=v0.6.1
REGGIE_COMMIT=a277a9357ad144a16a6dc34ea422b6f94c7c62b1
# sha256 over "sha256sum" lines of every file (sorted by path) of the extracted trees; independent of
# how the tarball was compressed or prefixed. Computed by tree_hash() below.
DIST_SPEC_TREE_SHA256=ae145acbac1fbea36a68e1c7dbb4f05c605ab0c3526df14b1431ecc79d275039
REGGIE_TREE_SHA256=69e5295837c012ab173988ac10a282908d9f8f3f36d7c62070e4e45f8216e9ff

GO_MIN_MINOR=23
GO_APT_PKG=golang-1.23-go
# Go libraries the suite (and reggie) import, with the Debian package that provides each.
#   github.com/onsi/ginkgo/v2            golang-github-onsi-ginkgo-v2-dev (backports, 2.15.0)
#   github.com/onsi/gomega               golang-gomega-dev (backports >= 1.27.10; bookworm has 1.10.3: too old)
#   github.com/opencontainers/go-digest  golang-github-opencontainers-go-digest-dev
#   github.com/google/uuid               golang-github-google-uuid-dev
#   github.com/go-resty/resty/v2         golang-github-go-resty-resty-dev   (reggie)
#   github.com/mitchellh/mapstructure    golang-github-mitchellh-mapstructure-dev (reggie)
#   github.com/asaskevich/govalidator    golang-github-asaskevich-govalidator-dev (reggie)
BACKPORTS_DEV_PKGS=(golang-github-onsi-ginkgo-v2-dev golang-gomega-dev)
MAIN_DEV_PKGS=(
  golang-github-opencontainers-go-digest-dev
  golang-github-google-uuid-dev
  golang-github-go-resty-resty-dev
  golang-github-mitchellh-mapstructure-dev
  golang-github-asaskevich-govalidator-dev
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${CONFORMANCE_CACHE_DIR:-$ROOT/.cache/conformance}"
SRC_DIR="${CONFORMANCE_SRC_DIR:-$CACHE/src}"
GOPATH_DIR="$CACHE/gopath"
OUT="$CACHE/conformance.test"
DIST_TARBALL="$SRC_DIR/distribution-spec-$DIST_SPEC_TAG.tar.gz"
REGGIE_TARBALL="$SRC_DIR/reggie-$REGGIE_TAG.tar.gz"

log() { printf 'conformance/build: %s\n' "$*" >&2; }
die() { printf 'conformance/build: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
  else die "need root to run: $* (install it by hand, then re-run)"
  fi
}

apt_install() { # apt_install [-t suite] pkg...
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$CACHE/apt.log" 2>&1 \
    || { tail -20 "$CACHE/apt.log" >&2; die "apt-get install $* failed (full log: $CACHE/apt.log)"; }
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -q >"$CACHE/apt-update.log" 2>&1 \
      || { tail -20 "$CACHE/apt-update.log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
}

# Make sure bookworm-backports is an apt source, reusing the mirror URI the machine already uses for
# bookworm (so no host name is hard-coded here).
ensure_backports() {
  if apt-cache policy 2>/dev/null | grep -q ' bookworm-backports/main '; then return; fi
  local codename uri
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ "$codename" = bookworm ] || die "Go >= 1.$GO_MIN_MINOR not found and this is not Debian bookworm ($codename): install Go >= 1.$GO_MIN_MINOR and the golang-*-dev packages listed in $0 by hand"
  uri="$(apt-cache policy 2>/dev/null | awk '$3 == "bookworm/main" && $4 ~ /amd64|arm64|all/ {print $2; exit}')"
  [ -n "$uri" ] || die "cannot find the bookworm apt mirror URI in 'apt-cache policy' to add bookworm-backports"
  log "adding apt source bookworm-backports ($uri)"
  as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  APT_UPDATED=0
  apt_update_once
}

find_go() {
  local d minor
  for d in /usr/lib/go-1.*/bin/go; do
    [ -x "$d" ] || continue
    minor="$(basename "$(dirname "$(dirname "$d")")")"; minor="${minor#go-1.}"
    if [ "$minor" -ge "$GO_MIN_MINOR" ] 2>/dev/null; then echo "$d"; return 0; fi
  done
  if command -v go >/dev/null 2>&1; then
    minor="$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
    if [ -n "$minor" ] && [ "$minor" -ge "$GO_MIN_MINOR" ]; then command -v go; return 0; fi
  fi
  return 1
}

tree_hash() { # tree_hash DIR -> sha256 of the sorted per-file sha256 list
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# Extract TARBALL's top folder (whatever its name) into DEST, check its tree hash.
extract_checked() { # extract_checked TARBALL SUBDIR DEST EXPECTED_HASH NAME
  local tarball="$1" subdir="$2" dest="$3" want="$4" name="$5" tmp got
  tmp="$(mktemp -d "$CACHE/extract.XXXXXX")"
  tar -xzf "$tarball" -C "$tmp" --strip-components=1 || die "cannot extract $tarball"
  [ -d "$tmp/$subdir" ] || die "$tarball has no $subdir/ folder"
  got="$(tree_hash "$tmp/$subdir")"
  if [ "$got" != "$want" ] && [ "${CONFORMANCE_ALLOW_UNVERIFIED:-0}" != 1 ]; then
    rm -rf "$tmp"
    die "$name source in $tarball is not the pinned version (tree sha256 $got, want $want); set CONFORMANCE_ALLOW_UNVERIFIED=1 to build it anyway"
  fi
  rm -rf "$dest"; mkdir -p "$(dirname "$dest")"
  if [ "$subdir" = . ]; then mv "$tmp" "$dest"; else mv "$tmp/$subdir" "$dest"; rm -rf "$tmp"; fi
}

mkdir -p "$CACHE" "$SRC_DIR"

# 1. Go toolchain -----------------------------------------------------------------------------------
if ! GO="$(find_go)"; then
  command -v apt-get >/dev/null 2>&1 || die "Go >= 1.$GO_MIN_MINOR not found and no apt-get to install it"
  apt_update_once
  ensure_backports
  log "installing $GO_APT_PKG from bookworm-backports"
  apt_install -t bookworm-backports "$GO_APT_PKG"
  GO="$(find_go)" || die "$GO_APT_PKG installed but no Go >= 1.$GO_MIN_MINOR found under /usr/lib/go-1.*"
fi
log "using $("$GO" version) ($GO)"

# 2. Go libraries as Debian packages ----------------------------------------------------------------
missing_bp=(); for p in "${BACKPORTS_DEV_PKGS[@]}"; do pkg_installed "$p" || missing_bp+=("$p"); done
missing_main=(); for p in "${MAIN_DEV_PKGS[@]}"; do pkg_installed "$p" || missing_main+=("$p"); done
# bookworm's own gomega (1.10.3) is too old for ginkgo v2: require >= 1.27.
if pkg_installed golang-gomega-dev && dpkg --compare-versions \
     "$(dpkg-query -W -f='${Version}' golang-gomega-dev)" lt 1.27; then
  missing_bp+=(golang-gomega-dev)
fi
if [ "${#missing_bp[@]}" -gt 0 ] || [ "${#missing_main[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing Debian packages: ${missing_bp[*]} ${missing_main[*]}"
  apt_update_once
  if [ "${#missing_bp[@]}" -gt 0 ]; then
    ensure_backports
    log "installing from bookworm-backports: ${missing_bp[*]}"
    apt_install -t bookworm-backports "${missing_bp[@]}"
  fi
  if [ "${#missing_main[@]}" -gt 0 ]; then
    log "installing: ${missing_main[*]}"
    apt_install "${missing_main[@]}"
  fi
fi

# 3. Sources ----------------------------------------------------------------------------------------
make_tarball() { # make_tarball GIT_DIR REF COMMIT PREFIX OUT [PATH...]
  local gd="$1" ref="$2" commit="$3" prefix="$4" out="$5"; shift 5
  local got
  got="$(git --git-dir="$gd" rev-parse --verify -q "$ref^{commit}" 2>/dev/null || true)"
  [ -n "$got" ] || got="$(git --git-dir="$gd" rev-parse --verify -q "$commit^{commit}" 2>/dev/null || true)"
  [ "$got" = "$commit" ] || die "$gd has no $ref at commit $commit"
  git --git-dir="$gd" archive --format=tar.gz --prefix="$prefix/" -o "$out.tmp" "$commit" "$@"
  mv "$out.tmp" "$out"
  log "wrote $out from $gd"
}
if [ ! -f "$DIST_TARBALL" ] && [ -n "${DIST_SPEC_GIT_DIR:-}" ]; then
  make_tarball "$DIST_SPEC_GIT_DIR" "$DIST_SPEC_TAG" "$DIST_SPEC_COMMIT" "distribution-spec-$DIST_SPEC_TAG" "$DIST_TARBALL" conformance
fi
if [ ! -f "$REGGIE_TARBALL" ] && [ -n "${REGGIE_GIT_DIR:-}" ]; then
  make_tarball "$REGGIE_GIT_DIR" "$REGGIE_TAG" "$REGGIE_COMMIT" "reggie-$REGGIE_TAG" "$REGGIE_TARBALL"
fi

# Fallback for fresh clones (CI): the same tarballs kept beside the repo in shared/conformance/src/.
SHARED_SRC_DIR="$ROOT/../shared/conformance/src"
for t in "$DIST_TARBALL" "$REGGIE_TARBALL"; do
  if [ ! -f "$t" ] && [ -f "$SHARED_SRC_DIR/$(basename "$t")" ]; then
    cp "$SHARED_SRC_DIR/$(basename "$t")" "$t"; log "copied $(basename "$t") from $SHARED_SRC_DIR"
  fi
done

# A clone on its own (no shared/ beside it): fetch the pinned commits from GitHub. The download is
# checked against the pinned tree hash before it is kept, so a changed or tampered archive is
# refused and never cached. CONFORMANCE_FETCH_BASE names a mirror; CONFORMANCE_OFFLINE=1 never fetches.
FETCH_BASE="${CONFORMANCE_FETCH_BASE:-https://codeload.github.com}"
fetch_pinned() { # fetch_pinned OWNER/REPO COMMIT OUT SUBDIR TREE_SHA256
  local url="$FETCH_BASE/$1/tar.gz/$2" out="$3" subdir="$4" want="$5" tmp got
  [ "${CONFORMANCE_OFFLINE:-0}" = 1 ] && return 0
  command -v curl >/dev/null 2>&1 || { log "no curl: cannot fetch $url"; return 0; }
  log "fetching $url"
  curl -fsSL --max-time 300 --max-filesize 67108864 -o "$out.part" "$url" \
    || { rm -f "$out.part"; log "could not fetch $url"; return 0; }
  tmp="$(mktemp -d "$CACHE/fetch.XXXXXX")"
  tar -xzf "$out.part" -C "$tmp" --strip-components=1 2>/dev/null || true
  got="$( [ -d "$tmp/$subdir" ] && tree_hash "$tmp/$subdir" || echo none)"
  rm -rf "$tmp"
  if [ "$got" != "$want" ]; then
    rm -f "$out.part"
    die "$url is not the pinned source (tree sha256 $got, want $want): refused"
  fi
  mv "$out.part" "$out"
  log "fetched $(basename "$out") (tree hash verified)"
}
[ -f "$DIST_TARBALL" ] || fetch_pinned opencontainers/distribution-spec "$DIST_SPEC_COMMIT" \
  "$DIST_TARBALL" conformance "$DIST_SPEC_TREE_SHA256"
[ -f "$REGGIE_TARBALL" ] || fetch_pinned bloodorangeio/reggie "$REGGIE_COMMIT" \
  "$REGGIE_TARBALL" . "$REGGIE_TREE_SHA256"
if [ "${1:-}" = --sources-only ]; then
  [ -f "$DIST_TARBALL" ] && [ -f "$REGGIE_TARBALL" ] || die "sources missing (see above)"
  log "sources ready in $SRC_DIR"; exit 0
fi

SYS_CONFORMANCE=/usr/share/gocode/src/github.com/opencontainers/distribution-spec/conformance

# Cached: nothing to do when the binary was built from exactly these inputs (this script, the
# sources, the Go toolchain and the Go packages). `make test` runs this every time; a no-op costs
# a few hashes. CONFORMANCE_REBUILD=1 forces a build.
stamp_key() {
  {
    sha256sum "$0" | cut -d' ' -f1
    for t in "$DIST_TARBALL" "$REGGIE_TARBALL"; do
      if [ -f "$t" ]; then sha256sum "$t" | cut -d' ' -f1; else echo "no $t"; fi
    done
    "$GO" version
    dpkg-query -W -f='${Package} ${Version}\n' "${BACKPORTS_DEV_PKGS[@]}" "${MAIN_DEV_PKGS[@]}" 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1
}
STAMP="$CACHE/conformance.test.stamp"
KEY="$(stamp_key)"
if [ "${CONFORMANCE_REBUILD:-0}" != 1 ] && [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$KEY" ]; then
  log "up to date: $OUT ($(head -1 "$CACHE/VERSIONS" 2>/dev/null))"
  exit 0
fi
SUITE_DIR="$GOPATH_DIR/src/github.com/opencontainers/distribution-spec/conformance"
REGGIE_DIR="$GOPATH_DIR/src/github.com/bloodorangeio/reggie"
if [ -f "$DIST_TARBALL" ]; then
  extract_checked "$DIST_TARBALL" conformance "$SUITE_DIR" "$DIST_SPEC_TREE_SHA256" distribution-spec
elif [ -f "$SYS_CONFORMANCE/setup.go" ]; then
  # Should Debian ever ship the conformance folder in a golang-*-dev package, use it.
  log "using the conformance suite from $SYS_CONFORMANCE"
  rm -rf "$SUITE_DIR"; mkdir -p "$(dirname "$SUITE_DIR")"; cp -r "$SYS_CONFORMANCE" "$SUITE_DIR"
else
  die "missing $DIST_TARBALL (distribution-spec $DIST_SPEC_TAG, commit $DIST_SPEC_COMMIT, conformance/ folder; Debian does not package it). Put it there, or set DIST_SPEC_GIT_DIR to a git clone of opencontainers/distribution-spec; see tests/conformance/README.md"
fi
if [ -f "$REGGIE_TARBALL" ]; then
  extract_checked "$REGGIE_TARBALL" . "$REGGIE_DIR" "$REGGIE_TREE_SHA256" reggie
elif [ -f /usr/share/gocode/src/github.com/bloodorangeio/reggie/client.go ]; then
  log "using reggie from /usr/share/gocode"
  rm -rf "$REGGIE_DIR"
else
  die "missing $REGGIE_TARBALL (bloodorangeio/reggie $REGGIE_TAG, commit $REGGIE_COMMIT; Debian does not package it). Put it there, or set REGGIE_GIT_DIR to a git clone of bloodorangeio/reggie; see tests/conformance/README.md"
fi

# 4. Build ------------------------------------------------------------------------------------------
log "building $OUT"
(
  cd "$SUITE_DIR"
  export GO111MODULE=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 GOPROXY=off \
         GOPATH="$GOPATH_DIR:/usr/share/gocode" GOCACHE="$CACHE/gocache"
  "$GO" test -c -o "$OUT.tmp" \
    -ldflags "-X github.com/opencontainers/distribution-spec/conformance.Version=$DIST_SPEC_TAG" .
) || die "go test -c failed (see the compiler output above)"
mv "$OUT.tmp" "$OUT"
{
  echo "distribution-spec $DIST_SPEC_TAG $DIST_SPEC_COMMIT"
  echo "reggie $REGGIE_TAG $REGGIE_COMMIT"
  "$GO" version
  dpkg-query -W -f='${Package} ${Version}\n' "${BACKPORTS_DEV_PKGS[@]}" "${MAIN_DEV_PKGS[@]}" 2>/dev/null || true
} >"$CACHE/VERSIONS"
log "built $OUT ($(cat "$CACHE/VERSIONS" | tr '\n' ';'))"
echo "$KEY" >"$STAMP"
