# rupost-agent in the mail boxes: installed from the project's .deb with
# dpkg inside each box (offline: the rootfs carries every dependency), then
# run as rupost-agent.service with /etc/rupost/agent.yaml (sourced by nodebox).

# The .deb to use: --deb, then $NODEBOX_DEB, then the newest one that
# `dpkg-buildpackage -b` (../) or scripts/build-deb (build-deb/) produced.
find_agent_deb() {
	local given=$1
	[ -n "$given" ] || given=${NODEBOX_DEB:-}
	if [ -n "$given" ]; then
		[ -f "$given" ] || die "agent package '$given' does not exist"
		readlink -f "$given"
		return 0
	fi
	local newest
	newest=$(ls -t "$REPO_ROOT"/../rupost-agent_*.deb "$REPO_ROOT"/build-deb/rupost-agent_*.deb 2>/dev/null | head -n 1)
	[ -n "$newest" ] && readlink -f "$newest"
	return 0
}

install_agent_everywhere() {
	local nodes=$1 deb box sum failed=0
	deb=$(find_agent_deb "$2")
	if [ -z "$deb" ]; then
		rm -f "$RUN_DIR/agent-deb"
		log "NOTE: no rupost-agent .deb found (--deb, \$NODEBOX_DEB, ../rupost-agent_*.deb, build-deb/*.deb);"
		log "NOTE: the mail boxes run without the agent. Build it with scripts/build-deb or dpkg-buildpackage -b -us -uc."
		return 0
	fi
	sum=$(sha256sum "$deb" | cut -c1-64)
	# The boxes see $RUN_DIR/shared read-only at /nodebox/shared.
	cp "$deb" "$RUN_DIR/shared/rupost-agent.deb.tmp"
	mv "$RUN_DIR/shared/rupost-agent.deb.tmp" "$RUN_DIR/shared/rupost-agent.deb"
	echo "$deb" >"$RUN_DIR/agent-deb"
	for box in $(mail_nodes "$nodes"); do
		install_agent "$box" "$sum" || failed=1
	done
	[ "$failed" = 0 ] || die "the agent could not be installed or started (see above)"
	log "agent: $(basename "$deb") running on: $(mail_nodes "$nodes")"
}

install_agent() {
	local box=$1 sum=$2 have
	have=$(box_exec "$box" cat /var/lib/nodebox/agent.sha256 2>/dev/null || true)
	if [ "$have" != "$sum" ]; then
		# --force-confold: a packaged agent.yaml never replaces the test one.
		if ! box_exec "$box" env DEBIAN_FRONTEND=noninteractive \
			dpkg -i --force-confold /nodebox/shared/rupost-agent.deb >"$(box_rundir "$box")/agent-install.log" 2>&1; then
			echo "nodebox: $box: dpkg -i of the agent failed:" >&2
			tail -n 20 "$(box_rundir "$box")/agent-install.log" >&2
			return 1
		fi
		box_exec "$box" /usr/local/lib/nodebox/setup agent-config
		box_exec "$box" sh -c "mkdir -p /var/lib/nodebox && echo $sum >/var/lib/nodebox/agent.sha256"
		box_exec "$box" systemctl enable --quiet rupost-agent.service
		box_exec "$box" systemctl restart rupost-agent.service || true
	else
		box_exec "$box" systemctl start rupost-agent.service || true
	fi
	if ! box_exec "$box" systemctl is-active --quiet rupost-agent.service; then
		echo "nodebox: $box: rupost-agent.service is not running:" >&2
		box_exec "$box" journalctl --no-pager -b -u rupost-agent.service -n 25 >&2 || true
		return 1
	fi
}
