# Sourced by the live-capture benches: a veth pair mtb0/mtb1 (MTU 65535,
# for a loopback capture's 64 KiB super-segments) in the network namespace
# $NS, and the helpers they share. The caller sets NS, defines die(), and
# deletes the namespace in its own EXIT trap.

# veth_up: makes $NS and the pair in it, both ends up.
veth_up() {
    ip netns add "$NS"
    ip -n "$NS" link add mtb0 type veth peer name mtb1
    local l
    for l in mtb0 mtb1; do
        ip -n "$NS" link set "$l" mtu 65535
        ip -n "$NS" link set "$l" up
    done
}

# nsx CMD...: runs CMD in $NS. (Background commands call `ip netns exec`
# directly: then $! is the process itself, as `ip` execs it, not a
# subshell.)
nsx() { ip netns exec "$NS" "$@"; }

# wait_for FILE PATTERN PID [TRIES]: until the started tool writes PATTERN
# to FILE (TRIES x 50 ms, default 200), or dies if PID exits first.
wait_for() {
    local i tries="${4:-200}"
    for i in $(seq "$tries"); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { cat "$1" >&2; die "exited before it was ready"; }
        sleep 0.05
    done
    cat "$1" >&2
    die "not ready after $((tries / 20)) s"
}
