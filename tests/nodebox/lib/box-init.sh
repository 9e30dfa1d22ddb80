#!/bin/bash
# Runs as PID 1 of a box's fresh pid namespace (started by `nodebox up` through
# nsenter --net + unshare --pid --mount --uts --ipc --cgroup).  It assembles the
# box's root the way a container manager would, then replaces itself with
# systemd.  Everything mounted here lives only in the box's mount namespace and
# vanishes with it, so the host never sees (or has to clean up) these mounts.
set -euo pipefail

usage() {
	echo "usage: box-init.sh BOX LOWER UPPER WORK MOUNTPOINT NFS_DIR SHARED_DIR CONSOLE" >&2
	exit 2
}
[ $# -eq 8 ] || usage
box=$1 lower=$2 upper=$3 work=$4 root=$5 nfs=$6 shared=$7 console=$8

fail() {
	echo "box-init[$box]: $*" >&2
	exit 1
}

mount_root() {
	mount -t overlay overlay \
		-o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root" ||
		fail "cannot mount the overlay root on $root"
	# Scratch space in RAM, like most systemd hosts.
	mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs "$root/tmp"
}

mount_proc() {
	mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
	# Kernel tunables are global except the network ones, which belong to the
	# box's own netns: make /proc/sys read-only and re-open only net.
	mount --bind "$root/proc/sys" "$root/proc/sys"
	mount -o remount,bind,ro,nosuid,nodev,noexec "$root/proc/sys"
	mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
	mount -o remount,bind,rw,nosuid,nodev,noexec "$root/proc/sys/net"
	# Not every kernel has it; never fail on a missing one.
	if [ -e "$root/proc/sysrq-trigger" ]; then
		mount --bind -o ro "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
	fi
}

mount_sys() {
	# Read-only sysfs also makes udev-ish units skip themselves.
	mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
	# A cgroup2 mounted inside the cgroup namespace shows only this box's own
	# subtree; the box's systemd then runs in unified mode and can never place
	# its units in the host's (or another box's) cgroups.
	mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
}

make_dev() {
	local d=$root/dev
	mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$d"
	mknod -m 666 "$d/null" c 1 3
	mknod -m 666 "$d/zero" c 1 5
	mknod -m 666 "$d/full" c 1 7
	mknod -m 666 "$d/random" c 1 8
	mknod -m 666 "$d/urandom" c 1 9
	mknod -m 666 "$d/tty" c 5 0
	mknod -m 666 "$d/fuse" c 10 229
	mkdir -m 755 "$d/net"
	mknod -m 666 "$d/net/tun" c 10 200
	mkdir -m 755 "$d/pts" "$d/shm"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$d/pts"
	ln -s pts/ptmx "$d/ptmx"
	mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m tmpfs "$d/shm"
	ln -s /proc/self/fd "$d/fd"
	ln -s /proc/self/fd/0 "$d/stdin"
	ln -s /proc/self/fd/1 "$d/stdout"
	ln -s /proc/self/fd/2 "$d/stderr"
	ln -s /proc/kcore "$d/core"
	# systemd writes its boot status to the console: a plain file on the host.
	touch "$d/console"
	mount --bind "$console" "$d/console"
}

mount_shared() {
	# The shared mail tree.  The kernel has no NFS client, so every box sees
	# the same host tmpfs directly; infra also exports it over NFSv4.
	mkdir -p "$root/srv/nfs"
	mount --bind "$nfs" "$root/srv/nfs"
	# Files the harness hands to boxes (the agent .deb), read-only.
	mkdir -p "$root/nodebox/shared"
	mount --bind "$shared" "$root/nodebox/shared"
	mount -o remount,bind,ro "$root/nodebox/shared"
}

switch_root() {
	cd "$root"
	# Stack the old root under the new one and detach it: afterwards nothing
	# of the host's mount tree is reachable from the box.
	pivot_root . .
	umount -l .
	cd /
}

mount --make-rprivate /
hostname "$box"
mount_root
mount_proc
mount_sys
make_dev
mount_shared
switch_root
# Shared propagation inside the box, as systemd sets it up on a real host
# (it leaves it alone in a container): a share mounted after a service
# started still reaches that service's private mount namespace
# (ProtectSystem=). The namespace was made private first, so nothing
# propagates back to the host.
mount --make-rshared /

# Boxes never get CAP_SYS_TIME (the realtime clock is the host's) nor
# CAP_SYS_MODULE; the bounding set is inherited by every process in the box.
exec env -i container=nodebox \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	setpriv --bounding-set -sys_time,-sys_module --inh-caps -all \
	/lib/systemd/systemd
