# network_up: bring the dump's link up (an interface found by name or MAC address, a
# bond of such, or the port with carrier of a bridge; a VLAN on top), configure it
# (static IPv4/IPv6, DHCP, DHCPv6 or SLAAC) and add the routes, for a network target;
# sets $host, the name of this machine in the dump's directory name. Each wait is
# bounded: interfaces by dump.device_timeout, the rest by dump.connect_timeout.

# by_mac MAC: the name of the interface with that address.
by_mac() {
    for device in /sys/class/net/*; do
        [ "$(cat "$device/address" 2>/dev/null)" = "$1" ] && { echo "${device##*/}"; return 0; }
    done
    return 1
}

# wait_for_interface NAME MAC: the interface's name once it exists (by MAC when given).
wait_for_interface() {
    waited=0
    while :; do
        if [ -n "$2" ]; then
            by_mac "$2" && return 0
        elif [ -e "/sys/class/net/$1" ]; then
            echo "$1"
            return 0
        fi
        [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] && return 1
        sleep 1
        waited=$((waited + 1))
    done
}

# What this capture made of the network, one "del LINK" (a bond or VLAN it created),
# "flush LINK" (an interface it configured) or "mac LINK ADDRESS" (a bridge port that
# took the bridge's MAC; ADDRESS its own) a line: a later attempt undoes it first.
MADE_LINKS=/run/kdump-links

# An earlier attempt (a network target that failed, before a fallback) left its links up
# with their addresses and routes; they would carry this attempt's traffic (the same
# subnet's route on the old link comes first) or refuse its address (it exists).
undo_links() {
    [ -f "$MADE_LINKS" ] || return 0
    while read -r action made own_mac; do
        # Down and without addresses even where deleting is refused: no route left on it.
        ip addr flush dev "$made" 2>/dev/null
        ip link set "$made" down 2>/dev/null
        [ "$action" = del ] && ip link delete "$made" 2>/dev/null
        [ "$action" = mac ] && ip link set "$made" address "$own_mac" 2>/dev/null
    done < "$MADE_LINKS"
    rm -f "$MADE_LINKS"
}

# The capture takes over the crashed host's own address: nobody else holds it, and
# duplicate address detection would only hold IPv6 back for a second or more.
no_dad() {
    [ -w "/proc/sys/net/ipv6/conf/$1/accept_dad" ] && echo 0 > "/proc/sys/net/ipv6/conf/$1/accept_dad"
    return 0
}

make_bond() {
    bond=/sys/class/net/$KDUMP_INTERFACE/bonding
    [ -d "$bond" ] || echo "+$KDUMP_INTERFACE" > /sys/class/net/bonding_masters 2>/dev/null \
        || fail "cannot create bond $KDUMP_INTERFACE (module bonding)"
    echo "del $KDUMP_INTERFACE" >> "$MADE_LINKS"
    echo "$KDUMP_BOND" > "$bond/mode" || fail "cannot set bond mode $KDUMP_BOND"
    echo 100 > "$bond/miimon"
    primary=""
    for mac in $KDUMP_BOND_PORTS; do
        port=$(wait_for_interface "" "$mac") \
            || fail "bond port $mac did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
        ip link set "$port" down
        echo "+$port" > "$bond/slaves" || fail "cannot add $port ($mac) to $KDUMP_INTERFACE"
        [ -n "$primary" ] || primary=$port
    done
    [ "$KDUMP_BOND" = active-backup ] && echo "$primary" > "$bond/primary"
    log "network: bond $KDUMP_INTERFACE ($KDUMP_BOND) of $(cat "$bond/slaves")"
    link=$KDUMP_INTERFACE
}

# ipv6_off LINK 1|0: a bridge port stays silent on IPv6 until it carries the bridge's
# MAC, so its link-local and SLAAC addresses come from that MAC, as on the host.
ipv6_off() {
    [ -w "/proc/sys/net/ipv6/conf/$1/disable_ipv6" ] && echo "$2" > "/proc/sys/net/ipv6/conf/$1/disable_ipv6"
    return 0
}

# with_carrier PORT...: those of the ports whose link is up, in order.
with_carrier() {
    for port in "$@"; do
        [ "$(cat "/sys/class/net/$port/carrier" 2>/dev/null)" = 1 ] && echo "$port"
    done
    return 0
}

# wait_for_carrier PORT...: sets $link to the first port with carrier, waiting at most
# dump.connect_timeout for one.
wait_for_carrier() {
    waited=0
    until link=$(with_carrier "$@") && [ -n "$link" ]; do
        [ "$waited" -ge "$KDUMP_CONNECT_TIMEOUT" ] \
            && fail "no port of bridge $KDUMP_INTERFACE ($*) has carrier after ${KDUMP_CONNECT_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
    set -- $link
    link=$1
}

# The host's bridge without a bridge: the address goes on the first port, in the
# recipe's order, whose link has carrier, and that port takes the bridge's MAC. The
# capture never forwards between the ports, so it needs no STP to avoid a loop.
make_bridge_port() {
    ports=""
    for mac in $KDUMP_BRIDGE_PORTS; do
        port=$(wait_for_interface "" "$mac") \
            || fail "bridge port $mac did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
        echo "flush $port" >> "$MADE_LINKS"
        ipv6_off "$port" 1
        ip link set "$port" up || fail "cannot bring bridge port $port up"
        ports="$ports $port"
    done
    wait_for_carrier $ports
    # echo $(...): the ports on one line.
    log "network: bridge $KDUMP_INTERFACE of$ports: carrier on $(echo $(with_carrier $ports)), using $link"
    for port in $ports; do
        [ "$port" = "$link" ] || ip link set "$port" down
    done
    own_mac=$(cat "/sys/class/net/$link/address")
    if [ -n "$KDUMP_BRIDGE_MAC" ] && [ "$own_mac" != "$KDUMP_BRIDGE_MAC" ]; then
        echo "mac $link $own_mac" >> "$MADE_LINKS"
        # Most drivers take a new address while up; the others only down, and their link
        # then comes up again.
        if ! ip link set "$link" address "$KDUMP_BRIDGE_MAC" 2>/dev/null; then
            ip link set "$link" down
            ip link set "$link" address "$KDUMP_BRIDGE_MAC" \
                || fail "cannot give $link the bridge's MAC $KDUMP_BRIDGE_MAC"
            ip link set "$link" up
            wait_for_carrier "$link"
        fi
        log "network: $link takes the bridge's MAC $KDUMP_BRIDGE_MAC"
    fi
    no_dad "$link"
    ipv6_off "$link" 0
}

# What the kernel made of an 802.3ad bond once it carries an address: a partner of
# 00:00:00:00:00:00 says the switch answers no LACP (the kernel then uses one port's
# aggregator alone).
lacp_state() {
    bond=/sys/class/net/$KDUMP_INTERFACE/bonding
    log "network: $KDUMP_INTERFACE mode $(cat "$bond/mode"), aggregator" \
        "$(cat "$bond/ad_aggregator") of $(cat "$bond/ad_num_ports") port(s)," \
        "partner $(cat "$bond/ad_partner_mac")"
}

# Sets $link, the interface that carries the address.
make_link() {
    if [ -n "$KDUMP_BOND" ]; then
        make_bond
    elif [ -n "$KDUMP_BRIDGE" ]; then
        make_bridge_port
    else
        link=$(wait_for_interface "$KDUMP_INTERFACE" "$KDUMP_INTERFACE_MAC") \
            || fail "network interface $KDUMP_INTERFACE${KDUMP_INTERFACE_MAC:+ ($KDUMP_INTERFACE_MAC)} did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
        echo "flush $link" >> "$MADE_LINKS"
    fi
    if [ -n "$KDUMP_VLAN" ]; then
        ip link set "$link" up
        ip link add link "$link" name "$link.$KDUMP_VLAN" type vlan id "$KDUMP_VLAN" \
            || fail "cannot add VLAN $KDUMP_VLAN on $link (module 8021q)"
        link=$link.$KDUMP_VLAN
        echo "del $link" >> "$MADE_LINKS"
    fi
    no_dad "$link"
    ip link set "$link" up || fail "cannot bring $link up"
}

# The first global IPv6 address of $link that is usable (not tentative), or nothing.
global_ipv6() {
    ip -6 addr show dev "$link" scope global 2>/dev/null \
        | sed -n '/tentative/d; s/^ *inet6 \([0-9a-f:]*\)\/.*/\1/p' | head -n 1
}

wait_for_slaac() {
    waited=0
    until address=$(global_ipv6) && [ -n "$address" ]; do
        [ "$waited" -ge "$KDUMP_CONNECT_TIMEOUT" ] \
            && fail "no IPv6 address from a router advertisement on $link in ${KDUMP_CONNECT_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
}

# dhcpv6: udhcpc6 sends from the link's link-local address, read once as it starts;
# the kernel adds it when the link has carrier. The router's advertisements still give
# the on-link prefix and routes, but the address is the leased one alone: no SLAAC
# address (an advertisement may have come already).
dhcpv6_lease() {
    echo 2 > "/proc/sys/net/ipv6/conf/$link/accept_ra"
    echo 0 > "/proc/sys/net/ipv6/conf/$link/autoconf"
    ip -6 addr flush dev "$link" scope global 2>/dev/null
    waited=0
    until ip -6 addr show dev "$link" scope link | grep -q inet6; do
        [ "$waited" -ge "$KDUMP_CONNECT_TIMEOUT" ] \
            && fail "no IPv6 link-local address on $link in ${KDUMP_CONNECT_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
    # Solicits 2 s apart for the rest of dump.connect_timeout.
    tries=$(((KDUMP_CONNECT_TIMEOUT - waited + 1) / 2))
    udhcpc6 -i "$link" -n -q -f -t "$((tries > 0 ? tries : 1))" -T 2 -o \
        -s "$KDUMP_UDHCPC6_SCRIPT" || fail "no DHCPv6 lease on $link in ${KDUMP_CONNECT_TIMEOUT}s"
    # The kernel's short form (udhcpc6 writes all eight groups in full).
    address=$(global_ipv6)
    [ -n "$address" ] || fail "the DHCPv6 lease on $link left no address"
    router_routes
}

# The leased /128 reaches nothing by itself: wait for the router's advertisement's
# on-link prefix or default route (none needed when dump.routes gives the routes).
router_routes() {
    [ -n "$KDUMP_ROUTES" ] && return 0
    waited=0
    until ip -6 route show dev "$link" | grep -v '^fe80:' | grep -q -e '^default' -e /; do
        if [ "$waited" -ge "$KDUMP_CONNECT_TIMEOUT" ]; then
            log "network: no route from a router advertisement on $link in ${KDUMP_CONNECT_TIMEOUT}s"
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

add_routes() {
    saved_ifs=$IFS
    IFS=,
    set -- $KDUMP_ROUTES
    IFS=$saved_ifs
    for route in "$@"; do
        # Word splitting is wanted: "<network> via <gateway>" (checked at build).
        ip route add $route dev "$link" || fail "cannot add route $route on $link"
    done
}

network_up() {
    ip link set lo up
    undo_links
    make_link
    case "$KDUMP_NETWORK" in
        static)
            ip addr add "$KDUMP_IP" dev "$link" || fail "cannot set address $KDUMP_IP"
            if [ -n "$KDUMP_GATEWAY" ]; then
                ip route add default via "$KDUMP_GATEWAY" dev "$link" \
                    || fail "cannot add route via $KDUMP_GATEWAY"
            fi
            address=${KDUMP_IP%/*}
            ;;
        slaac)
            echo 2 > "/proc/sys/net/ipv6/conf/$link/accept_ra"
            wait_for_slaac
            ;;
        dhcpv6)
            dhcpv6_lease
            ;;
        *)
            udhcpc -i "$link" -n -q -f -t 10 -T 2 -s "$KDUMP_UDHCPC_SCRIPT" \
                || fail "no DHCP lease on $link"
            address=$(cat /run/kdump-address)
            ;;
    esac
    add_routes
    log "network: $link is $address"
    [ "$KDUMP_BOND" = 802.3ad ] && lacp_state
    # The name becomes part of a path on the server: keep it to safe characters (an
    # IPv6 address's colons become dashes).
    host=${KDUMP_HOSTNAME:-$(echo "$address" | tr : -)}
    case "$host" in
        "" | *[!A-Za-z0-9.-]*) host=unknown ;;
    esac
}
