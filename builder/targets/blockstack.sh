# The block stack beneath a local dump filesystem: the md arrays of KDUMP_MD_ARRAYS,
# then the one LVM logical volume KDUMP_LVM_VOLUME, each found by its UUID.

# No udev in the capture: lvm2 makes its own device nodes, asks no udev database, and
# starts no monitoring daemon; it reads the labels of the block devices present, which
# are the ones whose drivers the capture loaded.
# Where the kernel lists block devices (a test points it elsewhere).
SYS_BLOCK=/sys/block

LVM_CAPTURE_CONFIG='devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 0 monitoring = 0 } global { locking_dir = "/run/lock/lvm" }'

# "present total": how many members of array $1 are present, and how many it has.
md_members() {
    mdadm --examine --scan --verbose --config=partitions 2>/dev/null | awk -v want="UUID=$1" '
        /^ARRAY/ {
            found = 0
            for (i = 1; i <= NF; i++) {
                if ($i == want) found = 1
                if ($i ~ /^num-devices=/) total = substr($i, 13)
            }
            next
        }
        found && /devices=/ {
            sub(/^ *devices=/, "")
            print split($0, members, ","), total
            exit
        }'
}

# Assemble array $1. A healthy array is waited for whole up to dump.device_timeout, so a
# member that is late is not dropped; after that it starts with what is there (--run).
assemble_md() {
    waited=0
    while :; do
        set -- "$1" $(md_members "$1")
        [ -n "$3" ] && [ "$2" -ge "$3" ] && break
        [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] && break
        sleep 1
        waited=$((waited + 1))
    done
    [ -n "$2" ] || fail "md array $1: no member appeared in ${KDUMP_DEVICE_TIMEOUT}s"
    [ "$2" -ge "$3" ] || log "md array $1: $2 of its $3 members present, starting it degraded"
    mdadm --assemble --scan --run --config=partitions --uuid="$1" \
        || fail "md array $1: mdadm could not assemble it"
    log "md array $1 assembled"
}

# Whether the logical volume is active: its device-mapper UUID is LVM-<VG UUID><LV UUID>.
lv_active() {
    want=$(echo "$KDUMP_LVM_VOLUME" | tr -d -)
    for file in "$SYS_BLOCK"/dm-*/dm/uuid; do
        case "$(cat "$file" 2>/dev/null)" in
            LVM-*"$want") return 0 ;;
        esac
    done
    return 1
}

activate_lv() {
    mkdir -p /run/lvm /run/lock/lvm
    # /init's descriptors are lvm's too; its warning about each would only be noise.
    export LVM_SUPPRESS_FD_WARNINGS=1
    waited=0
    until lv_active; do
        [ "$waited" -ge "$KDUMP_DEVICE_TIMEOUT" ] \
            && fail "LVM volume $KDUMP_LVM_VOLUME was not activated in ${KDUMP_DEVICE_TIMEOUT}s"
        lvm lvchange --config "$LVM_CAPTURE_CONFIG" --activate y \
            --select "lv_uuid=$KDUMP_LVM_VOLUME" > /tmp/lvm.log 2>&1 \
            || log "lvm: $(tail -n 1 /tmp/lvm.log)"
        lv_active && break
        sleep 1
        waited=$((waited + 1))
    done
    log "LVM volume $KDUMP_LVM_VOLUME active"
}

assemble_stack() {
    for uuid in $KDUMP_MD_ARRAYS; do
        assemble_md "$uuid"
    done
    [ -z "$KDUMP_LVM_VOLUME" ] || activate_lv
}
