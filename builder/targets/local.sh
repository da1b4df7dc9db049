# dump.target = "local": mount the dump filesystem, save into a directory named
# after the crash time.
save_to_target() {
    assemble_stack
    wait_for_device
    mount -t "$KDUMP_FSTYPE" ${KDUMP_MOUNT_OPTIONS:+-o "$KDUMP_MOUNT_OPTIONS"} "$device" /mnt/dump \
        || fail "cannot mount $device ($KDUMP_FSTYPE${KDUMP_MOUNT_OPTIONS:+, $KDUMP_MOUNT_OPTIONS})"
    mounted=yes
    save_to_directory "$stamp"
}
