#!/bin/sh
# Applies a DHCPv6 lease for the capture /init; busybox udhcpc6 runs it with the
# lease in its environment ($interface, $ipv6: the IA_NA address). DHCPv6 gives no
# prefix length: the address goes on as a /128, and the on-link prefix and routes come
# from the router's advertisements (or dump.routes), as on the host.
case "$1" in
    bound | renew)
        [ -n "$ipv6" ] || exit 1
        ip -6 addr replace "$ipv6/128" dev "$interface" || exit 1
        ;;
esac
exit 0
