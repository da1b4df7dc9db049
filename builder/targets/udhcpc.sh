#!/bin/sh
# Applies a DHCP lease for the capture /init; busybox udhcpc runs it with the
# lease in its environment ($interface, $ip, $subnet, $router, $dns).
case "$1" in
    deconfig)
        ip addr flush dev "$interface" 2>/dev/null
        ip link set "$interface" up
        ;;
    bound | renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        for gateway in $router; do
            route add default gw "$gateway" dev "$interface" && break
        done
        : > /etc/resolv.conf
        for server in $dns; do
            echo "nameserver $server" >> /etc/resolv.conf
        done
        echo "$ip" > /run/kdump-address
        ;;
esac
exit 0
