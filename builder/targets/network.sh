# network_up: bring dump.interface up (static or DHCP) for a network target; sets
# $host, the name of this machine in the dump's directory name.
network_up() {
    ip link set lo up
    waited=0
    until ip link set "$KDUMP_INTERFACE" up 2>/dev/null; do
        [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] \
            && fail "network interface $KDUMP_INTERFACE did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
    case "$KDUMP_NETWORK" in
        static)
            ip addr add "$KDUMP_IP" dev "$KDUMP_INTERFACE" || fail "cannot set address $KDUMP_IP"
            if [ -n "$KDUMP_GATEWAY" ]; then
                ip route add default via "$KDUMP_GATEWAY" || fail "cannot add route via $KDUMP_GATEWAY"
            fi
            address=${KDUMP_IP%/*}
            ;;
        *)
            udhcpc -i "$KDUMP_INTERFACE" -n -q -f -t 10 -T 2 -s "$KDUMP_UDHCPC_SCRIPT" \
                || fail "no DHCP lease on $KDUMP_INTERFACE"
            address=$(cat /run/kdump-address)
            ;;
    esac
    log "network: $KDUMP_INTERFACE is $address"
    host=${KDUMP_HOSTNAME:-$address}
    # The name becomes part of a path on the server: keep it to safe characters.
    case "$host" in
        "" | *[!A-Za-z0-9.-]*) host=unknown ;;
    esac
}

