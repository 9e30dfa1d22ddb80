# Box lifecycle: prepare the upper layer, launch, wait, exec, stop, clean up
# (sourced by nodebox).

# Units each role runs; everything else in the rootfs stays disabled.
INFRA_UNITS="nodebox-setup.service nodebox-data.service postgresql.service
 slapd.service slapd2.service memcached.service chrony.service
 rpcbind.service nfs-ganesha.service nsd.service"
MAIL_UNITS="nodebox-setup.service postfix.service dovecot.service
 nginx.service haproxy.service sogo.service chrony.service"

STOP_TIMEOUT=${NODEBOX_STOP_TIMEOUT:-25}

# --- state of a box ------------------------------------------------------

# PID of the launcher (`unshare`, parent of the box's PID 1), if alive.
box_launcher_pid() {
	local f pid state
	f=$(box_rundir "$1")/pid
	[ -s "$f" ] || return 1
	pid=$(cat "$f")
	[ -d "/proc/$pid" ] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$state" != Z ] || return 1
	# Guard against a recycled pid after a host reboot or a crash.
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "box-init.sh $1 " || return 1
	echo "$pid"
}

# Host PID of the box's systemd (PID 1 inside).
box_pid1() {
	local pid child
	pid=$(box_launcher_pid "$1") || return 1
	child=$(cut -d' ' -f1 "/proc/$pid/task/$pid/children" 2>/dev/null)
	[ -n "$child" ] || return 1
	echo "$child"
}

box_running() {
	local pid1
	pid1=$(box_pid1 "$1") || return 1
	[ "$(cat "/proc/$pid1/comm" 2>/dev/null)" = systemd ]
}

running_node_count() {
	[ -s "$RUN_DIR/nodes" ] || return 0
	local box
	for box in $(known_boxes); do
		if box_running "$box"; then
			cat "$RUN_DIR/nodes"
			return 0
		fi
	done
}

# --- exec ----------------------------------------------------------------

# Run a command inside a box.  Never plain `nsenter`: it would keep the
# host's full capability set (a `date -s` would move the host's clock).
# The process also joins the box's cgroup, so tools in the box see it as
# their own.
box_exec() {
	local box=$1 pid1 cg
	shift
	pid1=$(box_pid1 "$box") || die "box '$box' is not running"
	cg=$(box_cgroup "$box")
	(
		# A leaf of its own: on a cgroup2 host with controllers the box's root
		# cgroup may hold no processes once systemd delegated controllers.
		mkdir -p "$cg/nodebox-exec" 2>/dev/null &&
			echo "$BASHPID" >"$cg/nodebox-exec/cgroup.procs" 2>/dev/null || true
		exec nsenter -t "$pid1" -m -u -i -n -p -C -r -w -- \
			setpriv --bounding-set -sys_time,-sys_module --inh-caps -all \
			env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 container=nodebox "$@"
	) 9>&-
}

# --- preparing the upper layer ---------------------------------------------

hosts_file() {
	local nodes=$1 box
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
	printf '%s\tinfra.%s infra db.%s memcached.%s ntp.%s ldap1.%s ldap1\n' \
		"$(box_ip infra)" "$DOMAIN" "$DOMAIN" "$DOMAIN" "$DOMAIN" "$DOMAIN"
	printf '%s\tldap2.%s ldap2\n' "$LDAP2_IP" "$DOMAIN"
	for box in $(mail_nodes "$nodes"); do
		printf '%s\t%s.%s %s\n' "$(box_ip "$box")" "$box" "$DOMAIN" "$box"
	done
}

box_env_file() {
	local box=$1 nodes=$2
	cat <<-EOF
		# Written by nodebox before each boot; read by /usr/local/lib/nodebox/setup.
		NODEBOX_BOX=$box
		NODEBOX_ROLE=$(box_role "$box")
		NODEBOX_IP=$(box_ip "$box")
		NODEBOX_INFRA_IP=$(box_ip infra)
		NODEBOX_LDAP2_IP=$LDAP2_IP
		NODEBOX_CIDR=$NET_CIDR
		NODEBOX_DOMAIN=$DOMAIN
		NODEBOX_NODES="$(mail_nodes "$nodes")"
	EOF
}

# Enables units with systemctl --root against the merged tree, mounted in a
# throw-away mount namespace so the host never sees it.
enable_units() {
	local lower=$1 upper=$2 work=$3 units=$4 mnt
	mnt=$(dirname "$upper")/enable-mnt
	mkdir -p "$mnt"
	unshare --mount --propagation private -- bash -euc '
		mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
		systemctl --root="$4" --quiet enable $5
	' nodebox-enable "$lower" "$upper" "$work" "$mnt" "$units" ||
		die "cannot enable units in the box image: $units"
	rmdir "$mnt"
}

prepare_box() {
	local box=$1 nodes=$2 vd lower upper work role
	vd=$(box_vardir "$box")
	lower=$(rootfs_dir)
	upper=$vd/upper
	work=$vd/work
	role=$(box_role "$box")
	# An upper layer only makes sense on the lower it was made on.
	if [ -d "$upper" ] && [ "$(cat "$vd/lower" 2>/dev/null)" != "$lower" ]; then
		log "$box: rootfs changed, starting from a clean upper layer"
		safe_rm_tree "$upper"
		safe_rm_tree "$work"
	fi
	mkdir -p "$upper" "$work"
	echo "$lower" >"$vd/lower"

	mkdir -p "$upper/etc/nodebox" "$upper/etc/systemd/system" "$upper/usr/local/lib"
	echo "$box" >"$upper/etc/hostname"
	hosts_file "$nodes" >"$upper/etc/hosts"
	if [ ! -s "$upper/etc/machine-id" ]; then
		od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$upper/etc/machine-id"
		echo >>"$upper/etc/machine-id"
	fi
	box_env_file "$box" "$nodes" >"$upper/etc/nodebox/box.env"
	# The in-box setup scripts and unit files, refreshed on every boot.
	rm -rf "$upper/usr/local/lib/nodebox"
	cp -r "$NB_HOME/box" "$upper/usr/local/lib/nodebox"
	cp "$NB_HOME"/box/units/* "$upper/etc/systemd/system/"
	local mask
	for mask in $( [ "$role" = infra ] && echo nfs-ganesha-lock.service); do
		ln -sfn /dev/null "$upper/etc/systemd/system/$mask"
	done
	local units
	if [ "$role" = infra ]; then units=$INFRA_UNITS; else units=$MAIL_UNITS; fi
	enable_units "$lower" "$upper" "$work" "$(echo $units)"
}

# --- launch and readiness ------------------------------------------------

start_box() {
	local box=$1 rd vd cg ns
	rd=$(box_rundir "$box")
	vd=$(box_vardir "$box")
	cg=$(box_cgroup "$box")
	ns=$(box_ns "$box")
	mkdir -p "$rd/root" "$cg"
	: >"$rd/console"
	rm -f "$rd/pid"
	# The launcher joins the box's cgroup *before* unshare --cgroup, so the
	# box's cgroup namespace (and its systemd) is rooted at its own subtree.
	setsid bash -c '
		rd=$1 cg=$2 ns=$3
		shift 3
		echo $$ >"$rd/pid"
		echo $$ >"$cg/cgroup.procs" || { echo "cannot join cgroup $cg"; exit 1; }
		exec nsenter --net="/run/netns/$ns" -- \
			unshare --fork --pid --mount --uts --ipc --cgroup --propagation private -- "$@"
	' nodebox-launch "$rd" "$cg" "$ns" \
		"$NB_HOME/lib/box-init.sh" "$box" "$(rootfs_dir)" "$vd/upper" "$vd/work" \
		"$rd/root" "$RUN_DIR/nfs" "$RUN_DIR/shared" "$rd/console" \
		</dev/null >"$rd/init.log" 2>&1 9>&- &
	log "$box: booting ($(box_ip "$box"))"
}

box_boot_failed() {
	local box=$1 rd
	rd=$(box_rundir "$box")
	echo "nodebox: $box: $2; last lines of $rd/init.log and console:" >&2
	tail -n 15 "$rd/init.log" "$rd/console" >&2 2>/dev/null || true
	return 1
}

# Once PID 1 exists, the launcher (unshare, waiting for it) leaves the box's
# cgroup: the namespace root stays where it is, and the box's root cgroup is
# left to its systemd (which may enable controllers there on cgroup2 hosts).
park_launcher() {
	local box=$1 pid parking
	pid=$(box_launcher_pid "$box") || return 0
	parking=$(cg_parent)/launchers
	mkdir -p "$parking"
	echo "$pid" >"$parking/cgroup.procs" 2>/dev/null || true
}

wait_box_ready() {
	local box=$1 t0=$SECONDS pid1="" state
	while :; do
		if pid1=$(box_pid1 "$box") && [ -S "/proc/$pid1/root/run/systemd/private" ]; then
			park_launcher "$box"
			break
		fi
		if [ -s "$(box_rundir "$box")/pid" ] && ! box_launcher_pid "$box" >/dev/null; then
			box_boot_failed "$box" "the box exited during boot"
			return
		fi
		if [ $((SECONDS - t0)) -gt 60 ]; then
			box_boot_failed "$box" "systemd did not start within 60 s"
			return
		fi
		sleep 0.05
	done
	state=$(timeout 300 "$NB_HOME/nodebox" exec "$box" -- systemctl is-system-running --wait 2>/dev/null) || true
	# The box's own account of its boot (boxes boot in parallel, so the
	# time spent waiting here says little).
	local took
	took=$(box_exec "$box" systemd-analyze time 2>/dev/null | sed -n 's/^Startup finished in \(.*\) (userspace).*/\1/p')
	case $state in
	running) log "$box: booted (${took:-?} in userspace)" ;;
	degraded)
		local failed
		failed=$(box_exec "$box" systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
		log "$box: booted (${took:-?} in userspace) but degraded; failed units: $failed"
		log "$box: look with: nodebox logs $box UNIT"
		return 1
		;;
	*)
		box_boot_failed "$box" "boot did not finish (state '${state:-unknown}')"
		return
		;;
	esac
}

# The role setup units are oneshots: by the time the boot finished they
# have run; report their failure with their log.
wait_box_setup() {
	local box=$1 unit units
	if [ "$(box_role "$box")" = infra ]; then units=$INFRA_UNITS; else units=$MAIL_UNITS; fi
	for unit in $(echo "$units" | tr ' ' '\n' | grep '^nodebox-'); do
		if ! box_exec "$box" systemctl is-active --quiet "$unit"; then
			echo "nodebox: $box: $unit failed:" >&2
			box_exec "$box" journalctl --no-pager -b -u "$unit" -n 30 >&2 || true
			return 1
		fi
	done
}

# --- stop and clean up ---------------------------------------------------

wait_gone() {
	local pid=$1 limit=$2 t0=$SECONDS
	while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
		[ $((SECONDS - t0)) -lt "$limit" ] || return 1
		sleep 0.05
	done
}

stop_box() {
	local box=$1 pid pid1
	pid=$(box_launcher_pid "$box") || return 0
	if pid1=$(box_pid1 "$box"); then
		# SIGRTMIN+4 is systemd's "poweroff"; a pid namespace's init only
		# receives signals it handles (and SIGKILL) from outside.
		kill -s RTMIN+4 "$pid1" 2>/dev/null || true
		if wait_gone "$pid" "$STOP_TIMEOUT"; then
			log "$box: powered off"
			return 0
		fi
		log "$box: no clean poweroff within ${STOP_TIMEOUT} s, killing it"
		kill -KILL "$pid1" 2>/dev/null || true
	else
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait_gone "$pid" 10 || {
		echo "nodebox: $box: launcher $pid does not exit" >&2
		return 1
	}
}

# Kill whatever is left in a cgroup subtree and remove it, deepest first.
remove_cgroup() {
	local cg=$1 t0=$SECONDS
	[ -d "$cg" ] || return 0
	if [ -e "$cg/cgroup.kill" ]; then
		echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
	else
		local f p
		for f in $(find "$cg" -name cgroup.procs); do
			for p in $(cat "$f"); do kill -KILL "$p" 2>/dev/null || true; done
		done
	fi
	while [ -n "$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; do
		if [ $((SECONDS - t0)) -gt 10 ]; then
			echo "nodebox: processes in $cg survive SIGKILL" >&2
			return 1
		fi
		sleep 0.05
	done
	find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
	[ ! -d "$cg" ] || {
		echo "nodebox: cannot remove cgroup $cg" >&2
		return 1
	}
}

cleanup_box_runtime() {
	local box=$1 rc=0 rd
	rd=$(box_rundir "$box")
	if box_launcher_pid "$box" >/dev/null; then
		stop_box "$box" || rc=1
	fi
	remove_cgroup "$(box_cgroup "$box")" || rc=1
	remove_box_net "$box" || rc=1
	if [ -d "$rd" ]; then
		if mountpoint -q "$rd/root"; then umount -l "$rd/root" || rc=1; fi
		safe_rm_tree "$rd"
	fi
	return $rc
}

purge_box_state() {
	safe_rm_tree "$(box_vardir "$1")"
}

# Changing the node count changes peer lists and /etc/hosts of every mail
# box: drop boxes that are no longer wanted, reboot the remaining mail boxes.
reconcile_node_count() {
	local want=$1 have box
	have=$(running_node_count)
	[ -n "$have" ] && [ "$have" != "$want" ] || return 0
	log "node count changes from $have to $want: restarting the mail boxes"
	local mail
	mail=$(known_boxes | grep -v '^infra$' || true)
	# shellcheck disable=SC2086  # a list of box names
	stop_boxes $mail
	for box in $mail; do
		cleanup_box_runtime "$box"
		local n=${box#node}
		[ "$n" -le "$want" ] || purge_box_state "$box"
	done
}

# Power boxes off in parallel: each stop mostly waits for the box's shutdown.
stop_boxes() {
	local box pids=() p rc=0
	for box in "$@"; do
		stop_box "$box" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	return $rc
}

# --- shared directories ----------------------------------------------------

ensure_shared_dirs() {
	mkdir -p "$RUN_DIR/shared" "$RUN_DIR/nfs" "$RUN_DIR/boxes"
	if ! mountpoint -q "$RUN_DIR/nfs"; then
		# The "NFS" tree: a tmpfs that infra exports with nfs-ganesha and
		# that mail boxes get bind-mounted (the kernel has no NFS client).
		mount -t tmpfs -o mode=755,size=512m nodebox-nfs "$RUN_DIR/nfs" ||
			die "cannot mount the shared tmpfs on $RUN_DIR/nfs"
	fi
	local d
	for d in MailQueues MailStorage MailArchive MailRecord; do
		mkdir -p "$RUN_DIR/nfs/$d"
		# 420:420 as the product requires; 0755 so that postfix's own
		# unprivileged tools can walk down to their queue directory.
		chown 420:420 "$RUN_DIR/nfs/$d"
		chmod 755 "$RUN_DIR/nfs/$d"
	done
}

remove_shared_dirs() {
	local rc=0
	if mountpoint -q "$RUN_DIR/nfs"; then
		umount "$RUN_DIR/nfs" || umount -l "$RUN_DIR/nfs" || rc=1
	fi
	safe_rm_tree "$RUN_DIR/shared"
	safe_rm_tree "$RUN_DIR/boxes"
	rmdir "$RUN_DIR/nfs" 2>/dev/null || true
	return $rc
}

# Whatever an interrupted run may have left: netns bind mounts, our cgroup
# parent, mounts below our state directories.
sweep_leftovers() {
	local rc=0 ns m
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS_PREFIX" || true); do
		ip netns del "$ns" || rc=1
	done
	if [ -d "$(cg_parent)" ]; then
		remove_cgroup "$(cg_parent)" || rc=1
	fi
	for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($RUN_DIR|$VAR_DIR)(/|$)" | sort -r || true); do
		umount -l "$m" || rc=1
	done
	return $rc
}
