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
	# A running cluster keeps the package it was brought up with.
	if [ -s "$RUN_DIR/agent-deb" ] && [ -f "$(cat "$RUN_DIR/agent-deb")" ]; then
		cat "$RUN_DIR/agent-deb"
		return 0
	fi
	local newest
	newest=$(ls -t "$REPO_ROOT"/../rupost-agent_*.deb "$REPO_ROOT"/build-deb/rupost-agent_*.deb 2>/dev/null | head -n 1)
	[ -n "$newest" ] && readlink -f "$newest"
	return 0
}

# The standard configuration of a mail node (the format of
# rupost-agent.yaml(5)): every component a real node has, so the demo and the
# full-node test see a whole node. Test modules append their own probes (other
# names) and the healing tests write their own file. $1: the node, $2: the
# number of mail nodes. Intervals of 5-10 s, timeouts well below them.
# Password files: see agent_secrets.
agent_config() {
	local box=$1 nodes=${2:-$NB_DEFAULT_NODES}
	local infra=$NET_PREFIX.10 ldap2=$LDAP2_IP n addresses="" peers=""
	# Every node's address (the A records of mail.$DOMAIN) and the other
	# nodes' (NTP peers), as YAML flow lists.
	for n in $(mail_nodes "$nodes"); do
		addresses+="${addresses:+, }\"$(box_ip "$n")\""
		[ "$n" = "$box" ] || peers+="${peers:+, }\"$(box_ip "$n")\""
	done
	cat <<-EOF
		node: $box
		web:
		  listen_address: "0.0.0.0:9469"
		control_socket: /run/rupost-agent/control.sock
		probes:
		  - name: mail-units
		    type: systemd-unit
		    interval: 10s
		    timeout: 2s
		    rise: 1
		    fall: 1
		    units: [nginx.service, postfix.service, postfix@-.service, dovecot.service, sogo.service]
		  # The boxes' certificates are self-signed (tests/nodebox/box/setup):
		  # allowed here, so a healthy node is ok; a real node has a CA's.
		  - name: smtp
		    type: smtp
		    interval: 5s
		    timeout: 2s
		    address: "127.0.0.1:25"
		    tls: starttls
		    server_name: $box.$DOMAIN
		    allow_self_signed: true
		  - name: smtp-health
		    type: smtp
		    interval: 5s
		    timeout: 2s
		    address: "127.0.0.1:20025"
		  - name: imaps
		    type: imap
		    interval: 5s
		    timeout: 2s
		    address: "127.0.0.1:993"
		    server_name: $box.$DOMAIN
		    allow_self_signed: true
		  - name: managesieve
		    type: managesieve
		    interval: 10s
		    timeout: 2s
		    address: "127.0.0.1:4190"
		    server_name: $box.$DOMAIN
		    allow_self_signed: true
		  - name: lmtp
		    type: lmtp
		    interval: 10s
		    timeout: 2s
		    address: "127.0.0.1:24"
		  - name: postfix
		    type: postfix
		    interval: 10s
		    timeout: 3s
		    queue_directory: /srv/nfs/MailQueues/$box
		  - name: dovecot
		    type: dovecot
		    interval: 10s
		    timeout: 3s
		  - name: sogo
		    type: http
		    interval: 5s
		    timeout: 3s
		    url: "http://127.0.0.1:20000/SOGo/"
		    expect_status: [200, 302]
		  - name: sogo-nginx
		    type: http
		    interval: 5s
		    timeout: 3s
		    url: "https://127.0.0.1/SOGo/"
		    host_header: $box.$DOMAIN
		    expect_status: [200, 302]
		    depends_on: [sogo]
		  - name: nginx-redirect
		    type: http
		    interval: 10s
		    timeout: 2s
		    url: "http://127.0.0.1:80/"
		    expect_status: [301]
		    expect_location: "https://"
		  - name: nginx
		    type: nginx
		    interval: 10s
		    timeout: 2s
		  - name: haproxy
		    type: haproxy
		    interval: 5s
		    timeout: 2s
		    expected_peers: $((nodes - 1))
		  - name: postgres
		    type: postgres
		    interval: 10s
		    timeout: 3s
		    host: $infra
		    user: rupost
		    password_file: /etc/rupost/postgres.password
		  - name: ldap
		    type: ldap
		    interval: 10s
		    timeout: 3s
		    domain: $DOMAIN
		    controllers: ["ldap://$infra:389", "ldap://$ldap2:389"]
		    bind_dn: "cn=rupost-svc,dc=rupost,dc=test"
		    password_file: /etc/rupost/ldap.password
		    search_filter: "(mail=alice@$DOMAIN)"
		  - name: memcached
		    type: memcached
		    interval: 10s
		    timeout: 2s
		    address: "$infra:11211"
		    ldap_domains: 1
		    users: 2
		  - name: time
		    type: time
		    interval: 10s
		    timeout: 2s
		    servers: ["$infra"]
		    peers: [$peers]
		    # The boxes share the host's clock, which no chronyd may set.
		    ignore_kernel_clock: true
		  - name: dns
		    type: dns
		    interval: 30s
		    timeout: 3s
		    domain: $DOMAIN
		    mail_host: mail.$DOMAIN
		    addresses: [$addresses]
		    spf: "v=spf1 mx ~all"
		    nameserver: $infra
	EOF
	# The four shares; the boxes have no NFS client: one tmpfs at /srv/nfs.
	local share name
	for share in MailQueues MailStorage MailArchive MailRecord; do
		name=${share#Mail}
		cat <<-EOF
			  - name: nfs-${name,,}
			    type: nfs
			    interval: 10s
			    timeout: 3s
			    path: /srv/nfs/$share
			    mount_point: /srv/nfs
			    fstype: tmpfs
		EOF
	done
	# NODEBOX_HEALING=1 (the demo): the agents heal their node and share
	# their state in infra's PostgreSQL. The tests leave it off and turn
	# healing on themselves, so that their faults do not stop mail groups.
	if [ "${NODEBOX_HEALING:-0}" = 1 ]; then
		cat <<-EOF
			healing:
			  units: [nginx.service, postfix.service, dovecot.service, sogo.service]
			  member_probes: [mail-units, smtp, imaps]
			  stop_timeout: 5s
			  backoff_initial: 5s
			  backoff_max: 1m
			cluster:
			  conninfo: "hostaddr=$infra port=5432 user=rupost dbname=rupost sslmode=disable"
			  password_file: /etc/rupost/postgres.password
			  peer_address: "$(box_ip "$box"):9471"
		EOF
	fi
}

# The passwords the configuration refers to (the box's test accounts).
agent_secrets() {
	echo 'umask 077; mkdir -p /etc/rupost;'
	echo 'echo rupost >/etc/rupost/postgres.password;'
	echo 'echo rupost-svc-secret >/etc/rupost/ldap.password'
}

install_agent_everywhere() {
	local nodes=$1 deb box sum
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
	# Tests read this to know an agent is expected (and must work).
	echo "$deb" >"$RUN_DIR/agent-deb"
	# In parallel: dpkg and the agent's start dominate, one box each.
	local bad="" pids=() boxes=() i
	for box in $(mail_nodes "$nodes"); do
		install_agent "$box" "$sum" "$nodes" &
		pids+=($!)
		boxes+=("$box")
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || bad+="${boxes[$i]} "
	done
	# A broken agent is the product's failure, not the harness's: the
	# cluster stays up so the tests can report it.
	if [ -n "$bad" ]; then
		log "WARNING: rupost-agent is NOT running on: $bad(see above)"
	else
		log "agent: $(basename "$deb") running on: $(mail_nodes "$nodes")"
	fi
}

install_agent() {
	local box=$1 sum=$2 nodes=$3 have ilog
	ilog=$(box_rundir "$box")/agent-install.log
	have=$(box_exec "$box" cat /var/lib/nodebox/agent.sha256 2>/dev/null || true)
	box_exec "$box" sh -c "$(agent_secrets)" ||
		{ echo "nodebox: $box: cannot write the agent's password files" >&2; return 1; }
	agent_config "$box" "$nodes" | box_exec "$box" sh -c \
		'mkdir -p /etc/rupost && cat >/etc/rupost/agent.yaml.new && mv /etc/rupost/agent.yaml.new /etc/rupost/agent.yaml' ||
		{ echo "nodebox: $box: cannot write /etc/rupost/agent.yaml" >&2; return 1; }
	if [ "$have" != "$sum" ]; then
		# --force-confold: the test agent.yaml stays, whatever the package ships.
		if ! box_exec "$box" env DEBIAN_FRONTEND=noninteractive \
			dpkg -i --force-confold /nodebox/shared/rupost-agent.deb >"$ilog" 2>&1; then
			echo "nodebox: $box: dpkg -i of the agent failed:" >&2
			tail -n 20 "$ilog" >&2
			return 1
		fi
		box_exec "$box" sh -c "mkdir -p /var/lib/nodebox && echo $sum >/var/lib/nodebox/agent.sha256"
		box_exec "$box" systemctl enable --quiet rupost-agent.service || return 1
		box_exec "$box" systemctl restart rupost-agent.service || true
	else
		# Same package: a running agent reads the rewritten configuration.
		box_exec "$box" systemctl reload-or-restart rupost-agent.service || true
	fi
	# Type=notify: active means it started; give a crash a moment to show.
	sleep 0.5
	if ! box_exec "$box" systemctl is-active --quiet rupost-agent.service; then
		echo "nodebox: $box: rupost-agent.service is not running:" >&2
		box_exec "$box" journalctl --no-pager -b -u rupost-agent.service -n 8 >&2 || true
		return 1
	fi
}
