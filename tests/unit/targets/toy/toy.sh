# dump.target = "toy": the flattened stream into a fresh tmpfs (a test target).
save_to_target() {
    mkdir -p "$KDUMP_TOY_DIRECTORY" || fail "cannot create $KDUMP_TOY_DIRECTORY"
    mount -t tmpfs tmpfs "$KDUMP_TOY_DIRECTORY" || fail "cannot mount a tmpfs on $KDUMP_TOY_DIRECTORY"
    collect_stream > "$KDUMP_TOY_DIRECTORY/vmcore.flat" || fail "saving the dump failed"
    log "dump saved to $KDUMP_TOY_DIRECTORY/vmcore.flat"
}
