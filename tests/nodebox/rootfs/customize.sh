#!/bin/bash
# mmdebstrap customize hook: turns the freshly installed tree ($1) into a
# generic, role-less box image.  Everything node-specific (hostname, addresses,
# which services run, configs) is written into each box's overlay upper layer
# instead, so one cached rootfs serves every box.
set -euo pipefail
root=${1:?usage: customize.sh ROOTFS}

in_root() { chroot "$root" "$@"; }

# The shared mail tree is owned 420:420 (product requirement); dovecot
# delivers as this user.
in_root groupadd --system --gid 420 vmail
in_root useradd --system --uid 420 --gid 420 --home-dir /srv/nfs/MailStorage \
	--shell /usr/sbin/nologin vmail

# Nothing starts by itself: each box role enables exactly what it runs.
services=(postfix postfix@- nginx haproxy dovecot memcached postgresql
	postgresql@15-main chrony nfs-ganesha nfs-ganesha-lock rpcbind
	rpcbind.socket sogo slapd nsd)
for unit in "${services[@]}"; do
	in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
# slapd is a sysv script; drop its rc links so the generator does not start it.
find "$root"/etc/rc?.d -name 'S*' -delete

# Units that cannot work in a box (no udev, no consoles, no sunrpc/nfs client
# in the kernel) or only add noise (periodic maintenance timers).
masks=(getty@.service serial-getty@.service console-getty.service
	getty.target systemd-udevd.service systemd-udevd-control.socket
	systemd-udevd-kernel.socket systemd-udev-trigger.service
	systemd-udev-settle.service systemd-pstore.service
	systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer
	man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
	dpkg-db-backup.timer logrotate.timer systemd-tmpfiles-clean.timer
	run-rpc_pipefs.mount rpc_pipefs.target nfs-client.target
	rpc-gssd.service rpc-svcgssd.service systemd-modules-load.service
	sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
	sys-fs-fuse-connections.mount)
for unit in "${masks[@]}"; do
	ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done
ln -sfn /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"

# Journal in RAM: boxes are short-lived and the upper layer stays small.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' \
	>"$root/etc/systemd/journald.conf.d/nodebox.conf"

# chronyd must never discipline the clock: the realtime clock is the host's.
# The box has no CAP_SYS_TIME anyway; -x makes chronyd not even try, and the
# ConditionCapability reset lets it start without the capability.
printf 'DAEMON_OPTS="-F 1 -x"\n' >"$root/etc/default/chrony"
mkdir -p "$root/etc/systemd/system/chrony.service.d"
printf '[Unit]\nConditionCapability=\n' \
	>"$root/etc/systemd/system/chrony.service.d/nodebox.conf"

# sogod waits ~30 s for its workers on stop; tests stop boxes often.
mkdir -p "$root/etc/systemd/system/sogo.service.d"
printf '[Service]\nTimeoutStopSec=3s\n' \
	>"$root/etc/systemd/system/sogo.service.d/nodebox.conf"

# Limits the product's install guide requires for dovecot.
mkdir -p "$root/etc/systemd/system/dovecot.service.d"
printf '[Service]\nLimitNOFILE=1048576\nLimitNPROC=4194304\n' \
	>"$root/etc/systemd/system/dovecot.service.d/override.conf"

# No DNS in boxes: names come from /etc/hosts.
: >"$root/etc/resolv.conf"
# Each box gets its own machine-id in its upper layer.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
