# Networking: a bridge in a private "switch" netns, one veth per box, and
# fault injection on that switch (sourced by nodebox).  Nothing here touches
# the host's own network namespace: every `ip` call names a netns.

ns_exists() { [ -e "/run/netns/$1" ]; }

ensure_switch() {
	if ! ns_exists "$SWITCH_NS"; then
		ip netns add "$SWITCH_NS" || die "cannot create netns $SWITCH_NS"
	fi
	ip -n "$SWITCH_NS" link set lo up
	if ! ip -n "$SWITCH_NS" link show "$BRIDGE" >/dev/null 2>&1; then
		ip -n "$SWITCH_NS" link add "$BRIDGE" type bridge ||
			die "cannot create bridge $BRIDGE in $SWITCH_NS"
		ip -n "$SWITCH_NS" addr add "$SWITCH_IP/24" dev "$BRIDGE"
	fi
	ip -n "$SWITCH_NS" link set "$BRIDGE" up
}

remove_switch() {
	if ns_exists "$SWITCH_NS"; then
		ip netns del "$SWITCH_NS" || {
			echo "nodebox: cannot delete netns $SWITCH_NS" >&2
			return 1
		}
	fi
}

# A box's netns with eth0 plugged into the switch.  Created before boot so
# services binding to the box address start cleanly.
ensure_box_net() {
	local box=$1 ns veth ip
	ns=$(box_ns "$box")
	veth=$(box_veth "$box")
	ip=$(box_ip "$box")
	if ns_exists "$ns"; then
		ip netns del "$ns"
	fi
	ip netns add "$ns" || die "$box: cannot create netns $ns"
	ip -n "$SWITCH_NS" link del "$veth" 2>/dev/null || true
	ip -n "$ns" link add eth0 type veth peer name "$veth" netns "$SWITCH_NS" ||
		die "$box: cannot create veth pair eth0/$veth"
	ip -n "$SWITCH_NS" link set "$veth" master "$BRIDGE" up
	ip -n "$ns" addr add "$ip/24" dev eth0
	if [ "$box" = infra ]; then
		# Second directory controller of the same domain (slapd instance 2).
		ip -n "$ns" addr add "$LDAP2_IP/24" dev eth0
	fi
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
}

remove_box_net() {
	local ns
	ns=$(box_ns "$1")
	if ns_exists "$ns"; then
		ip netns del "$ns" || {
			echo "nodebox: cannot delete netns $ns" >&2
			return 1
		}
	fi
	if ns_exists "$SWITCH_NS"; then
		ip -n "$SWITCH_NS" link del "$(box_veth "$1")" 2>/dev/null || true
	fi
}

# Faults are bridge-level rules in the switch netns, matched on switch ports,
# so they cover every address of a box and leave the boxes' own nftables
# (which the agent may use) alone.
FAULT_TABLE=nodebox_faults

ensure_fault_table() {
	ns_exists "$SWITCH_NS" || die "no cluster is running (switch netns $SWITCH_NS missing)"
	ip netns exec "$SWITCH_NS" nft -f - <<-EOF
		table bridge $FAULT_TABLE {
			chain forward {
				type filter hook forward priority 0; policy accept;
			}
		}
	EOF
}

check_box_name() {
	box_ip "$1" >/dev/null 2>&1 || die "unknown box '$1' (infra, node1..node9)"
	ip -n "$SWITCH_NS" link show "$(box_veth "$1")" >/dev/null 2>&1 ||
		die "box '$1' is not plugged into the switch (is it up?)"
}

net_partition() {
	[ $# -eq 2 ] || die "usage: nodebox partition A B"
	local a=$1 b=$2
	[ "$a" != "$b" ] || die "partition: A and B must differ"
	check_box_name "$a"
	check_box_name "$b"
	ensure_fault_table
	local va vb
	va=$(box_veth "$a")
	vb=$(box_veth "$b")
	ip netns exec "$SWITCH_NS" nft -f - <<-EOF
		add rule bridge $FAULT_TABLE forward iifname "$va" oifname "$vb" drop comment "partition $a $b"
		add rule bridge $FAULT_TABLE forward iifname "$vb" oifname "$va" drop comment "partition $a $b"
	EOF
	log "partitioned $a <-> $b"
}

net_isolate() {
	[ $# -eq 1 ] || die "usage: nodebox isolate BOX"
	check_box_name "$1"
	# Pulling the cable: the box keeps its address but loses carrier.
	ip -n "$SWITCH_NS" link set "$(box_veth "$1")" down
	log "isolated $1"
}

net_heal() {
	ns_exists "$SWITCH_NS" || die "no cluster is running (switch netns $SWITCH_NS missing)"
	ip netns exec "$SWITCH_NS" nft delete table bridge "$FAULT_TABLE" 2>/dev/null || true
	local link
	for link in $(ip -n "$SWITCH_NS" -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^nbv-' || true); do
		ip -n "$SWITCH_NS" link set "$link" up
	done
	forget_unresolved_neighbours
	log "network healed"
}

# What a fault leaves behind in the boxes themselves: a box that kept
# talking across a cut link (haproxy peers, chrony, the agent) holds
# INCOMPLETE neighbour entries, and such an entry keeps the packets sent to
# it until its next ARP retry, up to retrans_time (1 s) away. The first
# answer across a healed link (a SYN-ACK) could then take as long as a
# client's whole `nc -w 1`. Without those entries the next packet asks at once.
forget_unresolved_neighbours() {
	local ns
	for ns in $(ip netns list | awk '{print $1}' | grep "^$NS_PREFIX" | grep -vx "$SWITCH_NS" || true); do
		ip -n "$ns" neigh flush dev eth0 nud incomplete nud failed 2>/dev/null || true
	done
}

partition_rules() {
	ns_exists "$SWITCH_NS" || return 0
	ip netns exec "$SWITCH_NS" nft list table bridge "$FAULT_TABLE" 2>/dev/null |
		sed -n 's/.*comment "\(partition [^"]*\)".*/  \1/p' | sort -u
	ip -n "$SWITCH_NS" -o link show | awk -F': ' '/nbv-/ && /state DOWN/ {sub(/@.*/, "", $2); sub(/^nbv-/, "", $2); print "  isolated " $2}'
}
