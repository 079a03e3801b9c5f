#!/usr/bin/env bash
# Idempotent host set-up for rootless Dockyard. Run as root (`make setup` calls it).
#
# What it makes true, and nothing more:
#   - the Debian packages rootless containers need are installed (apt-get is skipped when they all are,
#     so a repeated run is fast and works offline);
#   - an unprivileged user (default `dockyard`, env DOCKYARD_USER) with home /home/<user>, /bin/bash,
#     and 65536 subordinate uids and gids in /etc/subuid and /etc/subgid that overlap no other entry;
#   - a group `dockyard` (env DOCKYARD_GROUP) with that user in it: its members may use the platform's
#     socket; a second member `dockyard-peer` (its own subordinate ids), that the tests run a platform
#     as to prove delegation works for any member; and a user `dockyard-outsider`, in no such group,
#     that the tests prove is refused;
#   - /dev/fuse and /dev/net/tun are rw for everyone (chmod now, a udev rule for after reboot);
#   - unprivileged user namespaces are enabled (warns only: a sysctl is the admin's call);
#   - every member of the group gets its own cgroup subtree `dockyard/<user>` in every v1 hierarchy
#     (or, on cgroup v2, one with cpu/io/memory/pids enabled), so runc can enforce resource limits and
#     pause rootless for any member's platform (`dockyard system delegate USER` does it for one);
#   - every parent directory of this checkout is o+x, so the user can run the venv's python.
#
# Prints one line per action taken, or a single "host ready" line when nothing needed doing.
# Exits non-zero with a message naming the failed step.
set -euo pipefail

readonly PACKAGES=(
    uidmap fuse-overlayfs fuse3 runc crun rootlesskit slirp4netns busybox-static skopeo podman umoci catatonit
    buildah docker-registry conmon golang-github-containers-common hyperfine python3-venv python3-dev iproute2 iptables openssl util-linux procps ca-certificates curl jq
)
readonly USER_NAME="${DOCKYARD_USER:-dockyard}"
readonly USER_HOME="/home/${USER_NAME}"
readonly GROUP_NAME="${DOCKYARD_GROUP:-dockyard}"
readonly OUTSIDER_NAME=dockyard-outsider
readonly PEER_NAME=dockyard-peer
readonly SUBID_COUNT=65536
readonly SUBID_FLOOR=100000
readonly UDEV_RULE=/etc/udev/rules.d/70-dockyard-rootless.rules
REPO="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO

actions=0
step="start"

act() { # one line per action taken
    echo "host.sh: $*"
    actions=$((actions + 1))
}
warn() { echo "host.sh: warning: $*" >&2; }
die() {
    echo "host.sh: error: $*" >&2
    exit 1
}
trap 'rc=$?; [ "$rc" -eq 0 ] || echo "host.sh: failed during: ${step} (exit ${rc})" >&2' EXIT

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo make setup)"
[[ "$USER_NAME" =~ ^[a-z_][a-z0-9_-]{0,30}$ ]] || die "DOCKYARD_USER='${USER_NAME}' is not a valid user name"

# --- packages ----------------------------------------------------------------------------------------
step="packages"
missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    [ "${status:0:2}" = "ii" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (no network or broken sources?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    act "installed packages: ${missing[*]}"
fi

# --- the docker CLI, as a client of the Engine API (no daemon) ---------------------------------------
# Debian's docker.io package would also install and start a root dockerd; only its client binary is
# wanted, so it is taken out of the package without installing it.
step="docker CLI"
if ! command -v docker >/dev/null; then
    scratch="$(mktemp -d)"
    (cd "$scratch" && apt-get download -qq docker.io >/dev/null) || die "apt-get download docker.io failed"
    dpkg-deb -x "$scratch"/docker.io_*.deb "$scratch/x" || die "cannot unpack docker.io"
    install -m 0755 "$scratch/x/usr/bin/docker" /usr/local/bin/docker
    rm -rf "$scratch"
    act "installed the docker CLI (from Debian's docker.io, client only) in /usr/local/bin"
fi

# --- the unprivileged user ---------------------------------------------------------------------------
step="user"
if ! getent passwd "$USER_NAME" >/dev/null; then
    # SUB_*_COUNT=0: we allocate the subordinate ranges ourselves, below, so the result is the same
    # whether or not this useradd would have done it.
    useradd --create-home --home-dir "$USER_HOME" --shell /bin/bash \
        -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$USER_NAME" \
        || die "useradd ${USER_NAME} failed"
    act "created user ${USER_NAME} (home ${USER_HOME}, shell /bin/bash)"
fi
if [ "$(getent passwd "$USER_NAME" | cut -d: -f7)" != /bin/bash ]; then
    usermod --shell /bin/bash "$USER_NAME"
    act "set shell of ${USER_NAME} to /bin/bash"
fi
if [ "$(getent passwd "$USER_NAME" | cut -d: -f6)" != "$USER_HOME" ]; then
    usermod --home "$USER_HOME" "$USER_NAME"
    act "set home of ${USER_NAME} to ${USER_HOME}"
fi
if [ ! -d "$USER_HOME" ]; then
    install -d -m 0750 -o "$USER_NAME" -g "$(id -gn "$USER_NAME")" "$USER_HOME"
    act "created ${USER_HOME}"
fi

# --- the platform's group, and an outsider to test access with --------------------------------------
step="group"
if ! getent group "$GROUP_NAME" >/dev/null; then
    groupadd --system "$GROUP_NAME" || die "groupadd ${GROUP_NAME} failed"
    act "created group ${GROUP_NAME}"
fi
if ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$GROUP_NAME"; then
    usermod -a -G "$GROUP_NAME" "$USER_NAME" || die "usermod -aG ${GROUP_NAME} ${USER_NAME} failed"
    act "added ${USER_NAME} to group ${GROUP_NAME}"
fi
if ! getent passwd "$PEER_NAME" >/dev/null; then
    useradd --create-home --home-dir "/home/${PEER_NAME}" --shell /bin/bash \
        -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$PEER_NAME" || die "useradd ${PEER_NAME} failed"
    act "created user ${PEER_NAME} (a second member of ${GROUP_NAME}, for the delegation tests)"
fi
if ! id -nG "$PEER_NAME" | tr ' ' '\n' | grep -qx "$GROUP_NAME"; then
    usermod -a -G "$GROUP_NAME" "$PEER_NAME" || die "usermod -aG ${GROUP_NAME} ${PEER_NAME} failed"
    act "added ${PEER_NAME} to group ${GROUP_NAME}"
fi
if ! getent passwd "$OUTSIDER_NAME" >/dev/null; then
    useradd --no-create-home --shell /usr/sbin/nologin "$OUTSIDER_NAME" || die "useradd ${OUTSIDER_NAME} failed"
    act "created user ${OUTSIDER_NAME} (for the access tests: in no dockyard group)"
fi

# --- subordinate ids ---------------------------------------------------------------------------------
step="subordinate ids"
touch /etc/subuid /etc/subgid
# Total ids user $2 already owns in subid file $1 (entries may name the user or its numeric uid).
subid_total() {
    local uid
    uid="$(id -u "$2")"
    awk -F: -v n="$2" -v u="$uid" '($1 == n || $1 == u) && $3 ~ /^[0-9]+$/ { t += $3 } END { print t + 0 }' "$1"
}
# First start >= SUBID_FLOOR past the end of every range in the file: overlaps no other entry.
next_free_start() {
    awk -F: -v floor="$SUBID_FLOOR" '
        $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { end = $2 + $3; if (end > max) max = end }
        END { print (max > floor ? max : floor) }' "$1"
}
for who in "$USER_NAME" "$PEER_NAME"; do
    for file in /etc/subuid /etc/subgid; do
        if [ "$(subid_total "$file" "$who")" -lt "$SUBID_COUNT" ]; then
            start="$(next_free_start "$file")"
            echo "${who}:${start}:${SUBID_COUNT}" >>"$file"
            act "added ${who}:${start}:${SUBID_COUNT} to ${file}"
        fi
    done
done

# --- devices -----------------------------------------------------------------------------------------
step="devices"
if [ ! -e /dev/net/tun ]; then
    install -d -m 0755 /dev/net
    mknod -m 0666 /dev/net/tun c 10 200 || die "mknod /dev/net/tun failed"
    act "created /dev/net/tun (c 10 200)"
fi
[ -e /dev/fuse ] || die "/dev/fuse is missing: load the fuse module (modprobe fuse)"
for dev in /dev/fuse /dev/net/tun; do
    if [ "$(stat -c %a "$dev")" != 666 ]; then
        chmod 0666 "$dev"
        act "chmod 0666 ${dev}"
    fi
done
rule='# Written by dockyard deploy/setup/host.sh: rootless containers need these rw for ordinary users.
KERNEL=="fuse", MODE="0666"
KERNEL=="tun", SUBSYSTEM=="misc", MODE="0666"'
if [ ! -f "$UDEV_RULE" ] || [ "$(cat "$UDEV_RULE")" != "$rule" ]; then
    install -d -m 0755 "$(dirname "$UDEV_RULE")"
    printf '%s\n' "$rule" >"$UDEV_RULE"
    act "wrote ${UDEV_RULE} (keeps /dev/fuse and /dev/net/tun 0666 after reboot)"
fi

# --- cgroups: a subtree per member, for resource limits, pause and stats ---------------------------
# One implementation, shared with `dockyard system delegate USER`: dockyard.core.cgroups.delegate (it
# describes the layout), run with the system python3 since the venv may not exist yet. cgroupfs is not
# persistent: this runs at every `make run`/`make test`, and after a reboot `make setup` again.
step="cgroups"
if grep -qE ' cgroup2? ' /proc/self/mounts; then
    delegated="$(python3 "$REPO/deploy/setup/delegate_cgroups.py" "$GROUP_NAME")" \
        || die "cgroup delegation failed (see above)"
    while IFS= read -r line; do
        [ -z "$line" ] || act "$line"
    done <<<"$delegated"
else
    warn "no cgroup filesystem: container resource limits and pause will be refused"
fi

# --- user namespaces (warn only) ---------------------------------------------------------------------
step="user namespaces"
if [ -r /proc/sys/kernel/unprivileged_userns_clone ] \
    && [ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" = 0 ]; then
    warn "kernel.unprivileged_userns_clone=0: rootless containers cannot work;" \
        "enable with: sysctl -w kernel.unprivileged_userns_clone=1"
fi
if [ -r /proc/sys/user/max_user_namespaces ] && [ "$(cat /proc/sys/user/max_user_namespaces)" = 0 ]; then
    warn "user.max_user_namespaces=0: rootless containers cannot work;" \
        "enable with: sysctl -w user.max_user_namespaces=15000"
fi

# --- the checkout is reachable by the user -----------------------------------------------------------
step="checkout permissions"
dir="$REPO"
while :; do
    if [ $((0$(stat -c %a "$dir") & 01)) -eq 0 ]; then
        chmod o+x "$dir"
        act "chmod o+x ${dir} (so ${USER_NAME} can reach ${REPO})"
    fi
    [ "$dir" = / ] && break
    dir="$(dirname "$dir")"
done
if [ $((0$(stat -c %a "$REPO") & 04)) -eq 0 ]; then
    chmod o+r "$REPO"
    act "chmod o+r ${REPO}"
fi
if [ -e "$REPO/.venv/bin/python" ]; then
    runuser -u "$USER_NAME" -- "$REPO/.venv/bin/python" -c 'import sys' \
        || die "${USER_NAME} cannot run ${REPO}/.venv/bin/python: check permissions inside the checkout"
fi

step="done"
[ "$actions" -gt 0 ] || echo "host.sh: host ready"
