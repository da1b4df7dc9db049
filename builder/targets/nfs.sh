# dump.target = "nfs": mount the export with the kernel's NFS client, save into a
# directory named after this host and the crash time.
save_to_target() {
    network_up
    # Bounded: a server that does not answer would keep a hard mount retrying.
    timeout -s KILL "$KDUMP_CONNECT_TIMEOUT" \
        mount -t nfs -o "$KDUMP_NFS_OPTIONS" "$KDUMP_NFS_SOURCE" /mnt/dump \
        || fail "cannot mount $KDUMP_NFS_SOURCE ($KDUMP_NFS_OPTIONS) within ${KDUMP_CONNECT_TIMEOUT}s"
    mounted=yes
    save_to_directory "$host-$stamp"
}
