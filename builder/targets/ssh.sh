# dump.target = "ssh": stream the dump through dropbear's dbclient into a directory
# named after this host and the crash time on the server.

# ssh_run [--bounded] COMMAND: --bounded kills dbclient after dump.connect_timeout
# seconds (a server that does not answer); the dump's own transfer is not bounded.
ssh_run() {
    bound=""
    if [ "$1" = --bounded ]; then
        shift
        bound="timeout -s KILL $KDUMP_CONNECT_TIMEOUT"
    fi
    # The server's shell starts with its own umask (often 022): the dump is memory.
    set -- "umask 077; $*"
    set -- -p "$KDUMP_SSH_PORT" -i "$KDUMP_SSH_KEY" "$KDUMP_SSH_DESTINATION" "$@"
    # dbclient checks the server against /root/.ssh/known_hosts (the server's lines, put
    # there at build) and refuses another key; only dump.ssh_accept_any_host_key skips it.
    [ "$KDUMP_SSH_CHECK_HOST" = yes ] || set -- -y -y "$@"
    $bound dbclient "$@"
}

save_to_target() {
    network_up
    name="$host-$stamp"
    remote="$KDUMP_REMOTE_PATH/$name"
    ssh_run --bounded "mkdir -p -- $remote" < /dev/null \
        || fail "cannot create $remote on $KDUMP_SSH_DESTINATION within ${KDUMP_CONNECT_TIMEOUT}s"
    if makedumpfile --dump-dmesg /proc/vmcore /tmp/vmcore-dmesg.txt >/dev/null 2>&1; then
        ssh_run --bounded "cat > $remote/vmcore-dmesg.txt" < /tmp/vmcore-dmesg.txt \
            || log "could not save the kernel log"
    fi
    incomplete="$remote/vmcore-incomplete$KDUMP_STREAM_SUFFIX"
    log "saving /proc/vmcore to $KDUMP_SSH_DESTINATION:$incomplete"
    stream_into ssh_run "cat > $incomplete" \
        || fail "saving the dump failed; $incomplete is partial"
    ssh_run --bounded "mv -- $incomplete $remote/vmcore$KDUMP_STREAM_SUFFIX" < /dev/null \
        || fail "cannot rename $incomplete"
    echo "$KDUMP_TARGET_LABEL" | ssh_run "cat > $remote/kdump-target" || log "could not record the target"
    log "dump saved to $KDUMP_SSH_DESTINATION:$remote/vmcore$KDUMP_STREAM_SUFFIX"
}
