# dump.target = "raw": the flattened stream written over the whole device.
save_to_target() {
    wait_for_device
    log "writing the flattened dump to $device"
    if ! collect_stream > "$device"; then
        # Wipe the header so a partial stream is never taken for a dump.
        dd if=/dev/zero of="$device" bs=4096 count=1 conv=fsync 2>/dev/null
        fail "writing the dump to $device failed; header wiped"
    fi
    sync
    log "dump saved to $device"
}
