# dump.target = "local": mount the dump filesystem, save into a directory named
# after the crash time.
save_to_target() {
    wait_for_device
    mount -t "$KDUMP_FSTYPE" "$device" /mnt/dump || fail "cannot mount $device ($KDUMP_FSTYPE)"
    mounted=yes
    save_to_directory "$stamp"
}
