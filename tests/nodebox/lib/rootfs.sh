# The boxes' lower layer: a Debian bookworm tree built once with mmdebstrap
# and cached under $VAR_DIR/rootfs/<hash> (sourced by nodebox).

MIRROR=${NODEBOX_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${NODEBOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

rootfs_packages() {
	sed -e 's/#.*//' -e 's/[[:space:]]//g' "$NB_HOME/rootfs/packages.list" | grep -v '^$'
}

# Everything that changes the image content goes into the key; the hash is
# what lets a later `up` reuse the tree in well under a second.
rootfs_hash() {
	{
		echo "format 1 $MIRROR $SECURITY_MIRROR"
		rootfs_packages
		cat "$NB_HOME/rootfs/preseed.txt" "$NB_HOME/rootfs/customize.sh"
	} | sha256sum | cut -c1-16
}

rootfs_dir() { echo "$VAR_DIR/rootfs/$(rootfs_hash)"; }

ensure_rootfs() {
	local dir
	dir=$(rootfs_dir)
	if [ -e "$dir/.nodebox-complete" ]; then
		return 0
	fi
	local build="$dir.build"
	mkdir -p "$VAR_DIR/rootfs"
	safe_rm_tree "$build"
	log "building the box rootfs (once; cached as $dir)"
	local t0=$SECONDS includes
	includes=$(rootfs_packages | paste -sd, -)
	# The preseed must be in place before postfix and slapd are configured,
	# hence the essential hook (runs before the --include packages).
	if ! mmdebstrap --variant=minbase --mode=root --format=directory \
		--components=main \
		--aptopt='Acquire::Retries "3"' \
		--include="$includes" \
		--essential-hook="chroot \"\$1\" debconf-set-selections < '$NB_HOME/rootfs/preseed.txt'" \
		--customize-hook="'$NB_HOME/rootfs/customize.sh' \"\$1\"" \
		bookworm "$build" \
		"deb $MIRROR bookworm main" \
		"deb $MIRROR bookworm-updates main" \
		"deb $SECURITY_MIRROR bookworm-security main" \
		>"$VAR_DIR/rootfs/build.log" 2>&1; then
		tail -n 30 "$VAR_DIR/rootfs/build.log" >&2
		safe_rm_tree "$build"
		die "mmdebstrap failed (full log: $VAR_DIR/rootfs/build.log)"
	fi
	touch "$build/.nodebox-complete"
	mv "$build" "$dir"
	log "rootfs built in $((SECONDS - t0)) s ($(du -sh "$dir" | cut -f1))"
}

# Outdated images (a different package list) are dropped by `down --purge`.
remove_outdated_rootfs() {
	local dir old
	dir=$(rootfs_dir)
	for old in "$VAR_DIR"/rootfs/*; do
		[ -d "$old" ] && [ "$old" != "$dir" ] || continue
		log "removing outdated rootfs $old"
		safe_rm_tree "$old"
	done
}
