#!/bin/sh
# kdump-build capture /init: save /proc/vmcore to the dump target, then act.
# Everything recipe-specific is in /etc/kdump/kdump.conf (quoted assignments and
# the collect function, generated); this script itself never changes.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /run /mnt/dump

log() {
    echo "kdump: $*"
}

mounted=""

act() {
    log "action: $1"
    [ -n "$mounted" ] && umount /mnt/dump 2>/dev/null
    sync
    case "$1" in
        poweroff) poweroff -f ;;
        halt) halt -f ;;
        shell)
            setsid cttyhack sh
            reboot -f
            ;;
        *) reboot -f ;;
    esac
    # An action that returns has failed; never fall back into init's exit (a panic loop).
    while :; do sleep 3600; done
}

fail() {
    log "FAILED: $*"
    act "$KDUMP_FAILURE_ACTION"
}

. /etc/kdump/kdump.conf || fail "cannot read /etc/kdump/kdump.conf"

[ -e /proc/vmcore ] || fail "/proc/vmcore is missing: this is not a capture kernel"

while read -r module; do
    [ -n "$module" ] || continue
    insmod "$module" || log "insmod $module failed"
done < /etc/kdump/modules

find_device() {
    case "$KDUMP_DEVICE" in
        /dev/*) [ -b "$KDUMP_DEVICE" ] && echo "$KDUMP_DEVICE" ;;
        *) findfs "$KDUMP_DEVICE" 2>/dev/null ;;
    esac
}

waited=0
until device=$(find_device) && [ -n "$device" ]; do
    [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] && fail "dump device $KDUMP_DEVICE did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
    sleep 1
    waited=$((waited + 1))
done
log "dump device $KDUMP_DEVICE is $device"

mount -t "$KDUMP_FSTYPE" "$device" /mnt/dump || fail "cannot mount $device ($KDUMP_FSTYPE)"
mounted=yes

stamp=$(date +%Y-%m-%d-%H%M%S)
dir="/mnt/dump$KDUMP_PATH/$stamp"
mkdir -p "$dir" || fail "cannot create $dir"

if command -v makedumpfile >/dev/null; then
    makedumpfile --dump-dmesg /proc/vmcore "$dir/vmcore-dmesg.txt" >/dev/null || log "could not save the kernel log"
fi

log "saving /proc/vmcore to $dir"
collect "$dir/vmcore-incomplete" || fail "saving the dump failed; $dir/vmcore-incomplete is partial"
sync
mv "$dir/vmcore-incomplete" "$dir/vmcore" || fail "cannot rename $dir/vmcore-incomplete"
sync
log "dump saved to $dir/vmcore"
act "$KDUMP_FINAL_ACTION"
