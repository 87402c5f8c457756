#!/bin/bash
# Usage: docker-engine.sh start|stop
# start: starts Debian's dockerd when no engine answers, and records that this
#        script started it (build/dockerd.started holds its pid).
# stop:  stops that dockerd, and only that one; an engine someone else runs is
#        left alone. Both are idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
marker=build/dockerd.started
log=build/dockerd.log

answers() { docker info >/dev/null 2>&1; }

# Two parallel `make` runs must not both start a daemon.
mkdir -p build
exec 9>build/dockerd.lock
flock 9

start() {
    if answers; then
        echo "docker-engine: an engine already answers"
        return 0
    fi
    mkdir -p build
    echo "docker-engine: starting dockerd (log: $log)"
    # setsid: the daemon outlives the make that started it, and does not get
    # the terminal's signals. It inherits no descriptor but the three standard
    # ones: a lock its caller holds (the one above, or a `flock` around make)
    # would otherwise stay held for as long as dockerd runs.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
        done
        exec setsid dockerd >"$log" 2>&1 </dev/null
    ) &
    echo $! >"$marker"
    for _ in $(seq 1 60); do
        if answers; then
            echo "docker-engine: dockerd answers (pid $(cat "$marker"))"
            return 0
        fi
        if ! kill -0 "$(cat "$marker")" 2>/dev/null; then
            echo "docker-engine: dockerd exited; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            rm -f "$marker"
            return 1
        fi
        sleep 1
    done
    echo "docker-engine: dockerd did not answer within 60 s; see $log" >&2
    return 1
}

stop() {
    if [ ! -f "$marker" ]; then
        echo "docker-engine: not started by this script; leaving any engine alone"
        return 0
    fi
    pid=$(cat "$marker")
    # Only that pid, and only while it is still a dockerd.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        echo "docker-engine: stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "docker-engine: dockerd (pid $pid) still running after 30 s" >&2
            return 1
        fi
    fi
    rm -f "$marker"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
