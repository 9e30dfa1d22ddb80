# Shared settings and small helpers for nodebox (sourced, not run).
# shellcheck disable=SC2034  # settings used by the files that source this one

# Runtime state (pids, logs, the shared tmpfs) and persistent state (the
# cached rootfs and each box's overlay upper layer).
RUN_DIR=${NODEBOX_RUN_DIR:-/run/rupost-nodebox}
VAR_DIR=${NODEBOX_VAR_DIR:-/var/tmp/rupost-nodebox}
NB_DEFAULT_NODES=2

# Private addressing: only ever configured inside the boxes' and the switch's
# network namespaces.
NET_PREFIX=10.231.0
NET_CIDR=$NET_PREFIX.0/24
SWITCH_IP=$NET_PREFIX.254
LDAP2_IP=$NET_PREFIX.9
NS_PREFIX=rupost-nb-
SWITCH_NS=${NS_PREFIX}sw
BRIDGE=nbbr0
DOMAIN=rupost.test

# Resource names derived from a box name.
box_ns() { echo "$NS_PREFIX$1"; }
box_veth() { echo "nbv-$1"; }
box_ip() {
	case $1 in
	infra) echo "$NET_PREFIX.10" ;;
	node[1-9]) echo "$NET_PREFIX.$((10 + ${1#node}))" ;;
	*) return 1 ;;
	esac
}
box_role() { [ "$1" = infra ] && echo infra || echo mail; }
box_rundir() { echo "$RUN_DIR/boxes/$1"; }
box_vardir() { echo "$VAR_DIR/boxes/$1"; }

# The cgroup2 hierarchy: /sys/fs/cgroup/unified on hybrid hosts, the root on
# pure cgroup2 hosts.  Boxes get one subtree each below $(cg_parent).
cg_root() {
	if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
		echo /sys/fs/cgroup/unified
	elif [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
		echo /sys/fs/cgroup
	else
		die "no cgroup2 hierarchy found (need /sys/fs/cgroup/unified or a cgroup2 /sys/fs/cgroup)"
	fi
}
cg_parent() { echo "$(cg_root)/rupost-nodebox"; }
box_cgroup() { echo "$(cg_parent)/$1"; }

log() { printf '%s nodebox: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf 'nodebox: error: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] || die "must run as root (it creates namespaces, mounts and cgroups)"
}

# One nodebox command changing state at a time.  The lock fd is closed for
# every box launched, so a box never holds it.
lock_state() {
	mkdir -p "$RUN_DIR"
	exec 9>"$RUN_DIR/lock"
	flock -w 600 9 || die "another nodebox command holds $RUN_DIR/lock"
}

check_host_tools() {
	local t missing=()
	for t in unshare nsenter setpriv ip nft mmdebstrap flock mountpoint; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	[ ${#missing[@]} -eq 0 ] ||
		die "missing host tools: ${missing[*]} (scripts/install-deps installs them: util-linux iproute2 nftables mmdebstrap)"
}

# infra, node1..nodeN
box_list() {
	local n=$1 i
	echo infra
	for ((i = 1; i <= n; i++)); do echo "node$i"; done
}

mail_nodes() {
	local n=$1 i
	for ((i = 1; i <= n; i++)); do printf 'node%s ' "$i"; done
}

# Every box that has any runtime or persistent trace, so down can clean up
# after a failed or interrupted up as well.
known_boxes() {
	{
		ls "$RUN_DIR/boxes" 2>/dev/null || true
		ls "$(cg_parent)" 2>/dev/null | grep -E '^(infra|node[1-9])$' || true
		ip netns list 2>/dev/null | awk '{print $1}' |
			sed -n "s/^$NS_PREFIX\(infra\|node[1-9]\)\$/\1/p" || true
	} | sort -u
}

# Remove a directory tree that may have something mounted below it (an
# mmdebstrap killed mid-build leaves proc, sys and dev mounted in its chroot):
# unmount first, and never cross into another filesystem while deleting.
safe_rm_tree() {
	local dir=$1 m
	[ -e "$dir" ] || return 0
	for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^$dir(/|$)" | sort -r || true); do
		umount -l "$m" || die "cannot unmount $m below $dir"
	done
	rm -rf --one-file-system "$dir"
}
