# dump.target = "raw": the flattened stream written over a whole disk, found by the
# identity it carries ($KDUMP_DEVICE is SERIAL=... or WWN=...; builder/targets/rawid.py
# does the same scan on a running machine). No kernel name is trusted: the capture
# kernel may call another disk /dev/sdb.

# raw_identity DISK KIND: the disk's serial or WWN as sysfs shows it below DISK
# (/sys/block/<name>); the same files, in the same order, as IdentityKind.sysfs_files.
raw_identity() {
    case "$2" in
        SERIAL) files="serial device/serial device/vpd_pg80" ;;
        WWN) files="wwid device/wwid" ;;
        *) return 1 ;;
    esac
    for file in $files; do
        [ -r "$1/$file" ] || continue
        case "$file" in
            # The SCSI serial number page: a 4-byte header, then the serial.
            *vpd_pg80) value=$(tail -c +5 "$1/$file" 2>/dev/null | tr -d '\000') ;;
            *) value=$(tr -d '\000' < "$1/$file" 2>/dev/null) ;;
        esac
        value=$(printf '%s\n' "$value" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
        if [ -n "$value" ]; then
            printf '%s\n' "$value"
            return 0
        fi
    done
    return 1
}

# raw_disks SYSFS: the name of every disk in SYSFS/block that carries $KDUMP_DEVICE.
raw_disks() {
    kind=${KDUMP_DEVICE%%=*}
    wanted=${KDUMP_DEVICE#*=}
    for disk in "$1"/block/*; do
        [ -e "$disk" ] || continue
        value=$(raw_identity "$disk" "$kind") || continue
        # A WWN is hex: the recipe's is lower case already.
        [ "$kind" = WWN ] && value=$(printf '%s' "$value" | tr 'A-Z' 'a-z')
        [ "$value" = "$wanted" ] && printf '%s\n' "${disk##*/}"
    done
    return 0
}

# Signatures a dump must never overwrite: byte offset, length, the bytes in hex, what
# they mean. An earlier flattened dump ("makedumpfile" at 0) is checked first and
# allowed; a zeroed start (a failed write wipes it) matches nothing.
RAW_FLATTENED="0 12 6d616b6564756d7066696c65"
RAW_SIGNATURES="\
512 8 4546492050415254 a GPT partition table (EFI PART at byte 512)
4096 8 4546492050415254 a GPT partition table (EFI PART at byte 4096)
0 6 4c554b53babe a LUKS encrypted volume (LUKS header at byte 0)
0 8 4c4142454c4f4e45 an LVM physical volume (LABELONE at byte 0)
512 8 4c4142454c4f4e45 an LVM physical volume (LABELONE at byte 512)
1024 8 4c4142454c4f4e45 an LVM physical volume (LABELONE at byte 1024)
1536 8 4c4142454c4f4e45 an LVM physical volume (LABELONE at byte 1536)
0 4 fc4e2ba9 an md RAID member (superblock 1.1 at byte 0)
4096 4 fc4e2ba9 an md RAID member (superblock 1.2 at byte 4096)
0 4 58465342 an XFS filesystem (XFSB at byte 0)
1080 2 53ef an ext2/3/4 filesystem (magic 0xEF53 at byte 1080)
65600 8 5f42485266535f4d a btrfs filesystem (_BHRfS_M at byte 65600)
4086 10 53574150535041434532 swap space (SWAPSPACE2 at byte 4086)
4086 10 535741502d5350414345 swap space (SWAP-SPACE at byte 4086)
510 2 55aa an MBR partition table or boot sector (0x55AA at byte 510)"

# raw_bytes FILE OFFSET LENGTH: those bytes in lower-case hex.
raw_bytes() {
    dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | od -An -tx1 | tr -d ' \n'
}

# raw_signature DEVICE: what DEVICE holds that must not be overwritten; nothing when
# its start carries no known signature or an earlier flattened dump.
raw_signature() {
    head=${TMPDIR:-/tmp}/raw-head
    # 17 pages reach past the last offset checked (btrfs, 65600 + 8).
    if ! dd if="$1" of="$head" bs=4096 count=17 2>/dev/null; then
        echo "unreadable start (dd failed)"
        return 0
    fi
    set -- $RAW_FLATTENED
    [ "$(raw_bytes "$head" "$1" "$2")" = "$3" ] && return 0
    printf '%s\n' "$RAW_SIGNATURES" | while read -r offset length magic meaning; do
        if [ "$(raw_bytes "$head" "$offset" "$length")" = "$magic" ]; then
            printf '%s\n' "$meaning"
            break
        fi
    done
}

# find_device replaces /init's own (which takes a /dev path or LABEL=/UUID= through
# findfs) for this attempt: its wait_for_device then waits for a disk carrying the
# identity (raw_one_disk then refuses several; no kernel name is trusted).
find_device() {
    set -- $(raw_disks /sys)
    [ "$#" -ge 1 ] && [ -b "/dev/$1" ] && echo "/dev/$1"
}

# Fail unless exactly one disk carries the identity: several are never guessed between.
raw_one_disk() {
    set -- $(raw_disks /sys)
    [ "$#" -le 1 ] || fail "$KDUMP_DEVICE names $# disks ($*); not writing to any"
}

save_to_target() {
    wait_for_device
    raw_one_disk
    held=$(raw_signature "$device")
    [ -z "$held" ] || fail "not writing to $device ($KDUMP_DEVICE): it holds $held; wipe it (wipefs -a) if it is the dump disk"
    log "writing the flattened dump to $device"
    if ! collect_stream > "$device"; then
        # Wipe the header so a partial stream is never taken for a dump.
        dd if=/dev/zero of="$device" bs=4096 count=1 conv=fsync 2>/dev/null
        fail "writing the dump to $device failed; header wiped"
    fi
    sync
    log "dump saved to $device"
}
