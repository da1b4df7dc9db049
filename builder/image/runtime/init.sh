#!/bin/sh
# kdump-build capture /init: save /proc/vmcore to the dump target, then act.
# Everything recipe-specific is in /etc/kdump/kdump.conf (quoted assignments and
# the collect functions, generated); this script itself never changes.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
# A dump is this machine's memory: every file and directory /init writes is root's alone.
umask 077

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp /run /mnt/dump

log() {
    echo "kdump: $*"
}

mounted=""
attempting=""
# Where the dump went, for the post hooks: a directory on a mounted target, or empty.
dump_dir=""
hooks_done=""

# Hooks: /etc/kdump/{pre,post}.d/NN run in order by busybox sh. A failing hook is
# logged and the dump goes on: saving it matters more than any hook.
run_hooks() {
    for hook in /etc/kdump/"$1".d/*; do
        [ -f "$hook" ] || continue
        log "running $1 hook $hook"
        KDUMP_STATUS="$2" KDUMP_DUMP_DIR="$dump_dir" KDUMP_TARGET="$KDUMP_TARGET" sh "$hook" \
            || log "$1 hook $hook failed with status $?"
    done
}

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
    if [ -n "$attempting" ] && [ "$attempting" -lt "$KDUMP_TARGET_COUNT" ]; then
        # Inside an attempt (a subshell) with targets left: end it, the next one is tried.
        [ -n "$mounted" ] && umount /mnt/dump 2>/dev/null
        exit 1
    fi
    # Outside any attempt, or in the last one: the post hooks still see what that
    # attempt left (its dump directory, still mounted), so they run from here.
    if [ -z "$hooks_done" ]; then
        hooks_done=yes
        run_hooks post failed
    fi
    act "$KDUMP_FAILURE_ACTION"
}

. /etc/kdump/kdump.conf || fail "cannot read /etc/kdump/kdump.conf"

[ -e /proc/vmcore ] || fail "/proc/vmcore is missing: this is not a capture kernel"

while read -r module; do
    [ -n "$module" ] || continue
    insmod "$module" || log "insmod $module failed"
done < /etc/kdump/modules

run_hooks pre ""

stamp=$(date +%Y-%m-%d-%H%M%S)

find_device() {
    case "$KDUMP_DEVICE" in
        /dev/*) [ -b "$KDUMP_DEVICE" ] && echo "$KDUMP_DEVICE" ;;
        *) findfs "$KDUMP_DEVICE" 2>/dev/null ;;
    esac
}

wait_for_device() {
    waited=0
    until device=$(find_device) && [ -n "$device" ]; do
        [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] \
            && fail "dump device $KDUMP_DEVICE did not appear in ${KDUMP_DEVICE_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
    log "dump device $KDUMP_DEVICE is $device"
}

# An upper bound of the dump's size in bytes, before it is written: the pages
# makedumpfile's dry run keeps, each with its page descriptor, plus both bitmaps;
# or all of /proc/vmcore for `copy`.
dump_bound() {
    estimate_dump > /tmp/estimate.log 2>&1 || return 1
    size=$(sed -n 's/^size \([0-9]*\)$/\1/p' /tmp/estimate.log)
    if [ -n "$size" ]; then
        echo "$size"
        return 0
    fi
    pages=$(sed -n 's/^ *Remaining pages *: *\(0x[0-9a-fA-F]*\).*/\1/p' /tmp/estimate.log)
    total=$(sed -n 's/^ *Total pages *: *\(0x[0-9a-fA-F]*\).*/\1/p' /tmp/estimate.log)
    page_kib=$(sed -n 's/^KernelPageSize: *\([0-9]*\) kB$/\1/p' /proc/self/smaps | head -n 1)
    [ -n "$pages" ] && [ -n "$total" ] && [ -n "$page_kib" ] || return 1
    echo $((pages * (page_kib * 1024 + 24) + total / 4 + 1048576))
}

# Refuse a target that cannot hold the dump (the next target is tried) rather than
# fill its filesystem.
check_space() {
    if ! need=$(dump_bound); then
        log "cannot bound the dump's size; not checking free space"
        return 0
    fi
    free=$(df -Pk "$1" | awk 'NR == 2 { print $4 }')
    case "$free" in
        "" | *[!0-9]*)
            log "cannot read the free space of $1"
            return 0
            ;;
    esac
    need=$(((need + 1023) / 1024))
    [ "$need" -le "$free" ] \
        || fail "not enough space on $KDUMP_TARGET_LABEL: the dump needs up to $need KiB, $free KiB are free"
    log "free space: $free KiB, the dump needs up to $need KiB"
}

# collect into $1, its messages kept in $2 without the progress lines: makedumpfile
# says there what it could not do (a kernel newer than it knows, pages it kept).
collect_logged() {
    scratch=${TMPDIR:-/tmp}
    rm -f "$scratch/collect.status"
    { collect "$1"; echo $? > "$scratch/collect.status"; } 2>&1 | tee "$scratch/collect.log"
    tr '\r' '\n' < "$scratch/collect.log" | grep -v -e '^ *$' -e '%\]' > "$2"
    [ "$(cat "$scratch/collect.status" 2>/dev/null)" = 0 ]
}

# Dump into a directory of a mounted filesystem (targets that mount one).
save_to_directory() {
    dir="/mnt/dump$KDUMP_PATH/$1"
    check_space "/mnt/dump"
    mkdir -p "$dir" || fail "cannot create $dir"
    dump_dir=$dir
    echo "$KDUMP_TARGET_LABEL" > "$dir/kdump-target" || log "could not record the target in $dir"
    if command -v makedumpfile >/dev/null; then
        makedumpfile --dump-dmesg /proc/vmcore "$dir/vmcore-dmesg.txt" >/dev/null \
            || log "could not save the kernel log"
    fi
    log "saving /proc/vmcore to $dir"
    collect_logged "$dir/vmcore-incomplete" "$dir/$KDUMP_COLLECTOR_LOG" \
        || fail "saving the dump failed; $dir/vmcore-incomplete is partial"
    sync
    mv "$dir/vmcore-incomplete" "$dir/vmcore" || fail "cannot rename $dir/vmcore-incomplete"
    sync
    log "dump saved to $dir/vmcore"
}

# collect_stream into the command "$@"; fails when either side of the pipe fails.
stream_into() {
    rm -f /tmp/collect.status
    { collect_stream; echo $? > /tmp/collect.status; } | "$@" || return 1
    [ "$(cat /tmp/collect.status 2>/dev/null)" = 0 ]
}

# Each target's shell part (its `<name>.sh` in builder/targets/, shipped in the initrd
# at $KDUMP_TARGET_SHELL) defines save_to_target with the helpers above.
save_dump() {
    [ -r "$KDUMP_TARGET_SHELL" ] || fail "no shell part for dump target $KDUMP_TARGET"
    . "$KDUMP_TARGET_SHELL"
    save_to_target
}

# One target's attempt, in a subshell: its failure ends the attempt, not the capture.
attempt() {
    attempting=$1
    "target_$1"
    log "dump target $1 of $KDUMP_TARGET_COUNT: $KDUMP_TARGET_LABEL"
    save_dump
    printf '%s\n%s\n' "$dump_dir" "$mounted" > /run/kdump-saved
}

# dump.target, then each dump.fallback in order, until one saves the dump.
saved=""
number=1
while [ "$number" -le "$KDUMP_TARGET_COUNT" ]; do
    if (attempt "$number"); then
        saved=$number
        break
    fi
    number=$((number + 1))
    [ "$number" -le "$KDUMP_TARGET_COUNT" ] && log "trying the next dump target"
done
[ -n "$saved" ] || fail "the dump was not saved ($KDUMP_TARGET_COUNT target(s) tried)"
"target_$saved"
{ read -r dump_dir; read -r mounted; } < /run/kdump-saved
log "saved with dump target $saved of $KDUMP_TARGET_COUNT: $KDUMP_TARGET_LABEL"

hooks_done=yes
run_hooks post saved
act "$KDUMP_FINAL_ACTION"
