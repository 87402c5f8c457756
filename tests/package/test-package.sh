#!/bin/bash
# Usage: test-package.sh [SUITE]   (bookworm (default) or trixie)
# The packages of the repository as an operator meets them, in a systemd
# container of Debian SUITE (tests/image/build-base.sh SUITE, systemd as PID 1,
# no --privileged):
#   apt-get install realtime-glue from the signed repository `make repo` built,
#   enable glue@demo and see it active (running) with READY reported, hardened
#   to an exposure <= 2.0, restart it under load without losing a job, check the
#   staggered restart timers, run glue-readers (counts from a stand-in node,
#   hardened), upgrade keeping an edited conffile, then purge the package
#   cleanly, with the secrets the glue role writes into /etc/realtime-glue;
#   then the push-stream module: on Debian 12 apt installs ours from the
#   repository and nginx loads it; on Debian 13 apt refuses our Debian 12 build
#   (it depends on Debian 12's nginx ABI), which the release's repository
#   folder does not even offer, and installs Debian's, which nginx loads; then
#   the subscribe signature module: apt installs the build of the release's
#   folder (~deb12 / ~deb13, for its nginx ABI), nginx loads it and refuses a
#   short key by name, and the other release's build is refused.
# `make package-test` runs it for both releases (tests/package/test-releases.sh).
# Each step is printed; the container is removed on exit, pass or fail.
set -euo pipefail

# grep -q stops reading at the first match; the writer then dies of SIGPIPE and,
# under pipefail, the whole pipeline fails although the line was there.
contains() { grep "$@" >/dev/null; }
cd "$(dirname "$0")/../.."
root=$PWD
suite=${1:-bookworm}
image=$(tests/image/build-base.sh --name "$suite")
repo=$root/packaging/out/repo
# The flat repository of this release (make repo: one per release).
release_repo=$repo/$suite
jobs=${PACKAGE_TEST_JOBS:-2000}
ct=realtime-glue-package-test-$suite-$$
module_package=libnginx-mod-http-push-stream
module=/usr/lib/nginx/modules/ngx_http_push_stream_module.so

step() { echo; echo "=== package-test: $*"; }
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
in_ct() { docker exec "$ct" "$@"; }
in_ct_stdin() { docker exec -i "$ct" "$@"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds. The
# limit only stops a hung test; nothing asserts how fast anything is.
wait_for() {
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    fail "$what (still not true after ${limit}s)"
}
redis() { in_ct redis-cli --raw "$@"; }
show() { in_ct systemctl show -P "$1" "$2"; }

[ -f "$release_repo/InRelease" ] || fail "no repository at $release_repo: run make repo"

step "docker engine and base image ($image)"
tests/scripts/docker-engine.sh start
tests/image/build-base.sh "$suite"

step "start $ct from $image (systemd as PID 1)"
cleanup() {
    echo
    echo "=== package-test: removing container $ct"
    docker rm -f "$ct" >/dev/null 2>&1 || true
}
trap cleanup EXIT
docker run -d --name "$ct" --hostname "package-test-$suite" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --cap-add AUDIT_WRITE \
    --cap-add AUDIT_CONTROL --cap-add SYSLOG --cap-add SYS_NICE --cap-add SYS_TIME \
    --security-opt seccomp=unconfined --cgroupns=host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
    -v "$repo:/srv/realtime-glue-repo:ro" \
    -v "$root/tests/package:/srv/package-test:ro" \
    "$image" /lib/systemd/systemd >/dev/null
system_up() { [[ $(in_ct systemctl is-system-running) =~ ^(running|degraded)$ ]]; }
wait_for 120 "systemd in the container reached running" system_up
ok "systemd is $(in_ct systemctl is-system-running || true)"

step "add the repository (signed-by its throwaway key) and apt-get install realtime-glue redis-server"
in_ct_stdin tee /etc/apt/sources.list.d/realtime-glue.sources >/dev/null <<'SOURCES'
Types: deb
URIs: file:/srv/realtime-glue-repo
Suites: SUITE/
Signed-By: /srv/realtime-glue-repo/realtime-glue-repo.gpg
SOURCES
in_ct sed -i "s|^Suites: SUITE/|Suites: $suite/|" /etc/apt/sources.list.d/realtime-glue.sources
in_ct apt-get update -q
in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q realtime-glue redis-server
version=$(in_ct dpkg-query -W -f '${Version}' realtime-glue)
ok "realtime-glue $version installed from $(in_ct apt-cache policy realtime-glue | grep -m1 -o 'file:/srv/realtime-glue-repo[^ ]*')"

step "what the package installed"
in_ct test -x /usr/bin/realtime-glue || fail "/usr/bin/realtime-glue missing"
in_ct grep -qx /etc/realtime-glue/glue.toml /var/lib/dpkg/info/realtime-glue.conffiles \
    || fail "/etc/realtime-glue/glue.toml is not a conffile"
in_ct getent passwd realtime-glue || fail "no realtime-glue user"
in_ct getent group realtime-glue || fail "no realtime-glue group"
[ "$(show UnitFileState glue.target)" = enabled ] || fail "glue.target is not enabled"
[ "$(show UnitFileState glue@demo.service)" = disabled ] \
    || fail "glue@demo was enabled by the package (templates must not be)"
in_ct realtime-glue check-config
ok "binary, conffile, user, glue.target enabled, glue@ template left alone, config valid"

step "a stand-in push node on 127.0.0.1:8080 (the default config's node: a push node's cluster listener)"
in_ct systemd-run --unit=fake-push-node python3 /srv/package-test/fake_push_node.py /run/pushed.log
push_node_up() { in_ct python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8080), 1)'; }
wait_for 30 "the stand-in push node listens" push_node_up
ok "listening"

step "systemctl enable --now glue@demo (Type=notify: returns once READY=1 arrives)"
in_ct systemctl enable --now glue@demo.service
state=$(in_ct systemctl is-active glue@demo.service || true)
sub=$(show SubState glue@demo.service)
in_ct systemctl status --no-pager glue@demo.service || true
[ "$state" = active ] && [ "$sub" = running ] || fail "glue@demo is $state ($sub)"
status_text=$(show StatusText glue@demo.service)
[ -n "$status_text" ] || fail "glue@demo reported no STATUS= with READY=1"
ok "glue@demo active (running); StatusText=\"$status_text\"; NRestarts=$(show NRestarts glue@demo.service)"
for property in MemoryDenyWriteExecute NoNewPrivileges PrivateUsers ProtectSystem User; do
    echo "    $property=$(show "$property" glue@demo.service)"
done

step "watchdog pings arrive (WatchdogSec=$(show WatchdogUSec glue@demo.service))"
first_ping=$(show WatchdogTimestampMonotonic glue@demo.service)
pinged() { [ "$(show WatchdogTimestampMonotonic glue@demo.service)" != "$first_ping" ]; }
wait_for 120 "a WATCHDOG=1 ping after start" pinged
ok "last ping at $(show WatchdogTimestamp glue@demo.service)"

step "W^X: gevent, greenlet and cryptography under MemoryDenyWriteExecute=yes"
# The demo pipeline does not encrypt; exercise the libraries the encrypt stage
# and the runtime use, under the same W^X and syscall filter as glue@.
in_ct systemd-run --wait --pipe --quiet -p MemoryDenyWriteExecute=yes -p NoNewPrivileges=yes \
    -p SystemCallFilter=@system-service -p SystemCallArchitectures=native -p User=realtime-glue \
    python3 -c '
from gevent import monkey
monkey.patch_all()
import gevent, prometheus_client, redis, yaml
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = AESGCM.generate_key(bit_length=256)
sealed = AESGCM(key).encrypt(b"123456789012", b"payload", None)
assert Fernet(Fernet.generate_key()).encrypt(sealed)
switches = gevent.joinall([gevent.spawn(gevent.sleep, 0.01) for _ in range(100)])
print("gevent", gevent.__version__, "switched", len(switches), "greenlets; AES-GCM and Fernet ok")
' || fail "the runtime libraries fail under MemoryDenyWriteExecute=yes"
ok "no W^X violation"

step "systemd-analyze security glue@demo.service (live) must be <= 2.0"
in_ct systemd-analyze security --no-pager --threshold=20 glue@demo.service | tail -n 25 \
    || fail "exposure of glue@demo.service above 2.0"
ok "$(in_ct systemd-analyze security --no-pager glue@demo.service | grep -o 'exposure level.*')"

step "a job goes through"
in_ct realtime-glue enqueue demo '{"channel": "pkgtest", "event": "message", "data": {"seq": 0}}'
delivered() { [ "$(redis GET feed.finishes:demo)" -ge "$1" ]; }
wait_for 60 "the first job finished" delivered 1
in_ct cat /run/pushed.log
ok "finished: feed.finishes:demo=$(redis GET feed.finishes:demo)"

step "enqueue $jobs jobs, then systemctl restart glue@demo while they are processed"
pid_before=$(show MainPID glue@demo.service)
# `realtime-glue enqueue demo` reads one job per line from stdin; the last
# job goes in as an argument, just before the restart.
in_ct sh -c "seq 1 $((jobs - 1)) | sed 's/.*/{\"channel\": \"pkgtest\", \"event\": \"message\", \"data\": {\"seq\": &}}/' \
    | realtime-glue enqueue demo >/dev/null"
in_ct realtime-glue enqueue demo "{\"channel\": \"pkgtest\", \"event\": \"message\", \"data\": {\"seq\": $jobs}}"
echo "queued before the restart: ids=$(redis LLEN feed.ids:demo) claimed=$(redis ZCARD feed.claimed:demo) finished=$(redis GET feed.finishes:demo)"
in_ct systemctl restart glue@demo.service
[ "$(in_ct systemctl is-active glue@demo.service)" = active ] || fail "glue@demo not active after restart"
[ "$(show MainPID glue@demo.service)" != "$pid_before" ] || fail "glue@demo kept its old process"
echo "right after the restart: ids=$(redis LLEN feed.ids:demo) claimed=$(redis ZCARD feed.claimed:demo) finished=$(redis GET feed.finishes:demo)"
wait_for 180 "all $((jobs + 1)) jobs finished" delivered $((jobs + 1))
in_ct realtime-glue status --json || fail "realtime-glue status --json failed"
echo
published=$(redis GET feed.publishes:demo)
finished=$(redis GET feed.finishes:demo)
left=$(( $(redis LLEN feed.ids:demo) + $(redis ZCARD feed.claimed:demo) + $(redis SCARD feed.stalled:demo) ))
pushed=$(in_ct sh -c "grep -o '\"seq\": *[0-9]*' /run/pushed.log | sort -u | wc -l")
echo "put=$published finished=$finished queued+claimed+stalled=$left distinct messages at the push node=$pushed"
[ "$published" = $((jobs + 1)) ] || fail "feed.publishes:demo=$published, expected $((jobs + 1))"
[ "$finished" = "$published" ] && [ "$left" = 0 ] || fail "jobs lost or stuck across the restart"
[ "$pushed" = $((jobs + 1)) ] || fail "the push node saw $pushed distinct messages, expected $((jobs + 1))"
[ "$(show NRestarts glue@demo.service)" = 0 ] || fail "glue@demo restarted on its own (crash or watchdog)"
ok "no job lost across systemctl restart; no unplanned restart"

step "a wedged glue (SIGSTOP, jobs in flight) is restarted by the watchdog and loses nothing"
# A stopped process sends no watchdog ping: systemd aborts it after WatchdogSec
# (SIGABRT, and SIGCONT so it can die) and restarts it; the new process takes
# the old claims back once their leases expire. Nothing is lost.
restarts_before=$(show NRestarts glue@demo.service)
finished_before=$(redis GET feed.finishes:demo)
wedged_jobs=500
in_ct sh -c "seq 1 $wedged_jobs | sed 's/.*/{\"channel\": \"wedged\", \"event\": \"message\", \"data\": {\"seq\": &}}/' \
    | realtime-glue enqueue demo >/dev/null"
wedged_pid=$(show MainPID glue@demo.service)
in_ct kill -STOP "$wedged_pid"
echo "glue@demo (pid $wedged_pid) stopped with ids=$(redis LLEN feed.ids:demo) claimed=$(redis ZCARD feed.claimed:demo)"
restarted() { [ "$(show NRestarts glue@demo.service)" -gt "$restarts_before" ] && [ "$(show MainPID glue@demo.service)" != "$wedged_pid" ]; }
wait_for 180 "systemd restarted the wedged glue@demo" restarted
in_ct journalctl -u glue@demo.service --no-pager -n 40 | grep -E 'Watchdog timeout|Fatal Python error|Current thread|killed|Failed with result' || true
in_ct journalctl -u glue@demo.service --no-pager | contains 'Watchdog timeout' \
    || fail "the journal does not say the watchdog restarted glue@demo"
wait_for 240 "all $wedged_jobs jobs of the wedged glue finished" delivered $((finished_before + wedged_jobs))
wedged_pushed=$(in_ct sh -c "grep '/pub?id=wedged ' /run/pushed.log | grep -o '\"seq\": *[0-9]*' | sort -u | wc -l")
left=$(( $(redis LLEN feed.ids:demo) + $(redis ZCARD feed.claimed:demo) + $(redis SCARD feed.stalled:demo) ))
echo "finished=$(redis GET feed.finishes:demo) queued+claimed+stalled=$left distinct wedged messages pushed=$wedged_pushed"
[ "$left" = 0 ] || fail "jobs left behind after the watchdog restart"
[ "$wedged_pushed" = "$wedged_jobs" ] || fail "the push node saw $wedged_pushed of $wedged_jobs messages"
# The restarted glue is active once it sent READY=1 (Type=notify): it may still be starting.
active_again() { [ "$(in_ct systemctl is-active glue@demo.service)" = active ]; }
for _ in $(seq 1 120); do active_again && break; sleep 1; done
if [ "$(in_ct systemctl is-active glue@demo.service)" != active ]; then
    in_ct systemctl status --no-pager glue@demo.service || true
    in_ct journalctl -u glue@demo.service --no-pager -n 60 || true
    fail "glue@demo not active after the watchdog restart"
fi
ok "watchdog restart after $(show WatchdogUSec glue@demo.service); NRestarts=$(show NRestarts glue@demo.service); nothing lost"

step "a config error stops the unit with status 78 (EX_CONFIG) instead of restarting it"
# glue@nosuch names a pipeline the config does not have.
in_ct systemctl start glue@nosuch.service || true
config_failed() { [ "$(show ActiveState glue@nosuch.service)" = failed ]; }
wait_for 60 "glue@nosuch failed" config_failed
sleep 7  # longer than RestartSec: a restart would have happened by now
in_ct systemctl status --no-pager glue@nosuch.service | tee /tmp/glue-nosuch-status.txt || true
[ "$(show ExecMainStatus glue@nosuch.service)" = 78 ] || fail "glue@nosuch exited $(show ExecMainStatus glue@nosuch.service), not 78"
[ "$(show NRestarts glue@nosuch.service)" = 0 ] || fail "glue@nosuch was restarted on a config error"
grep -q 'status=78/CONFIG' /tmp/glue-nosuch-status.txt || fail "systemctl status does not show status=78/CONFIG"
grep -q 'config error: pipelines.nosuch' /tmp/glue-nosuch-status.txt || fail "systemctl status does not show the config error"
in_ct systemctl reset-failed glue@nosuch.service
ok "status=78/CONFIG, the key named, not restarted"

step "the journal has the glue's priorities and fields (journalctl -p warning, GLUE_NODE=)"
in_ct systemctl stop fake-push-node
in_ct realtime-glue enqueue demo '{"channel": "journal", "event": "message", "data": {"seq": 1}}'
warned() { in_ct journalctl -u glue@demo.service -p warning --no-pager | contains 'push node 127.0.0.1:8080 is failing'; }
wait_for 60 "a warning at priority warning in the journal" warned
in_ct journalctl -u glue@demo.service -p warning --no-pager -n 5
node_entry=$(in_ct journalctl GLUE_NODE=127.0.0.1:8080 GLUE_PIPELINE=demo -p warning -o json -n 1 --no-pager)
echo "$node_entry" | python3 -c 'import json, sys; e = json.load(sys.stdin); assert e["PRIORITY"] == "4" and e["SYSLOG_IDENTIFIER"] == "glue@demo", e; print("PRIORITY", e["PRIORITY"], "GLUE_NODE", e["GLUE_NODE"], "MESSAGE", e["MESSAGE"])' \
    || fail "no journal entry with GLUE_NODE and priority 4"
if in_ct journalctl -u glue@demo.service --no-pager -o cat -n 200 | contains 'glue@demo realtime_glue'; then
    fail "log messages still repeat the unit's glue@demo identifier"
fi
in_ct systemd-run --unit=fake-push-node python3 /srv/package-test/fake_push_node.py /run/pushed.log
journal_delivered() { in_ct grep -q '/pub?id=journal ' /run/pushed.log; }
wait_for 120 "the held message delivered once the push node is back" journal_delivered
ok "warnings at priority 4 with GLUE_PIPELINE and GLUE_NODE; the message was held and delivered"

step "staggered restart timers: a stable offset per pipeline"
in_ct systemctl enable --now glue-restart@demo.timer glue-restart@comments.timer
next() { show NextElapseUSecRealtime "glue-restart@$1.timer"; }
demo_next=$(next demo)
comments_next=$(next comments)
in_ct systemctl list-timers --no-pager 'glue-restart@*'
[ -n "$demo_next" ] && [ "$demo_next" != "$comments_next" ] \
    || fail "demo and comments restart at the same time ($demo_next)"
in_ct systemctl restart glue-restart@demo.timer
[ "$(next demo)" = "$demo_next" ] || fail "the offset moved when the timer was re-armed: $(next demo)"
ok "demo at $demo_next, comments at $comments_next; re-arming keeps demo's"
invocation=$(show InvocationID glue@demo.service)
in_ct systemctl start glue-restart@demo.service
[ "$(show InvocationID glue@demo.service)" != "$invocation" ] \
    || fail "glue-restart@demo.service did not restart glue@demo"
[ "$(in_ct systemctl is-active glue@demo.service)" = active ] || fail "glue@demo not active after the timed restart"
in_ct systemctl start glue-restart@comments.service
[ "$(in_ct systemctl is-active glue@comments.service || true)" = inactive ] \
    || fail "glue-restart@comments started a pipeline that was not running"
ok "glue-restart@demo.service restarted glue@demo; glue-restart@comments left a stopped pipeline stopped"

step "glue-readers.service: reader counts across the push nodes, hardened, one publisher"
in_ct systemctl enable --now glue-readers.service
[ "$(in_ct systemctl is-active glue-readers.service || true)" = active ] || {
    in_ct journalctl -u glue-readers.service --no-pager -n 30
    fail "glue-readers is not active"
}
[ -n "$(show StatusText glue-readers.service)" ] || fail "glue-readers reported no STATUS= with READY=1"
# The stand-in node has two readers on pkgtest: the counts go to /pub?id=readers.
readers_published() { in_ct grep -q '^/pub?id=readers .*"pkgtest":2' /run/pushed.log; }
wait_for 60 "glue-readers published the stand-in node's readers" readers_published
in_ct grep -m1 '^/pub?id=readers ' /run/pushed.log
in_ct sh -c 'python3 -c "import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:9309/metrics\").read().decode())" | grep -E "^glue_readers(_total|_publishing)? "' \
    || fail "glue-readers serves no metrics on 127.0.0.1:9309"
in_ct systemd-analyze security --no-pager --threshold=20 glue-readers.service | tail -n 3 \
    || fail "exposure of glue-readers.service above 2.0"
ok "glue-readers active: $(show StatusText glue-readers.service); $(in_ct systemd-analyze security --no-pager glue-readers.service | grep -o 'exposure level.*')"

step "upgrade: an operator's config edit survives, running instances restart on the new code"
in_ct sh -c 'echo "# operator edit kept across upgrades" >>/etc/realtime-glue/glue.toml'
# The same package under a higher version stands in for the next release.
in_ct sh -c "dpkg-deb -R /srv/realtime-glue-repo/$suite/realtime-glue_${version}_all.deb /tmp/next \
    && sed -i 's/^Version: .*/Version: ${version}+next/' /tmp/next/DEBIAN/control \
    && dpkg-deb -b /tmp/next /tmp/realtime-glue-next.deb >/dev/null"
invocation=$(show InvocationID glue@demo.service)
in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/realtime-glue-next.deb 2>&1 | tail -n 4
[ "$(in_ct dpkg-query -W -f '${Version}' realtime-glue)" = "${version}+next" ] || fail "upgrade not installed"
in_ct grep -q 'operator edit kept' /etc/realtime-glue/glue.toml || fail "the config edit was lost in the upgrade"
[ "$(show InvocationID glue@demo.service)" != "$invocation" ] || fail "glue@demo was not restarted by the upgrade"
[ "$(in_ct systemctl is-active glue@demo.service)" = active ] || fail "glue@demo not active after the upgrade"
[ "$(show UnitFileState glue@demo.service)" = enabled ] || fail "glue@demo no longer enabled after the upgrade"
ok "edit kept, glue@demo restarted (via glue.target) and still enabled"

step "secrets as the glue role writes them (at its default paths), then apt-get purge realtime-glue"
# What `ansible/roles/glue` leaves in /etc/realtime-glue beside the conffile: the
# Redis password, stage keys, the subscribe key set, the applied fingerprints, the
# Web Push keys; plus the role's drop-in for the restart timers. None of it
# is the package's own file, and the README says purge removes it all.
password_file=$(sed -n 's/^glue_redis_password_file: //p' ansible/roles/glue/defaults/main.yml)
key_dir=$(sed -n 's/^glue_key_dir: //p' ansible/roles/glue/defaults/main.yml)
applied_dir=$(sed -n 's/^glue_fingerprint_dir: //p' ansible/roles/glue/vars/main.yml)
subscribe_keys=$(sed -n 's/^glue_subscribe_keys_file: //p' ansible/roles/glue/defaults/main.yml)
vapid_key=$(sed -n 's/^glue_webpush_vapid_key_file: //p' ansible/roles/glue/defaults/main.yml)
token_key=$(sed -n 's/^glue_webpush_token_key_file: //p' ansible/roles/glue/defaults/main.yml)
secrets=("$password_file" "$key_dir/demo.encrypt.key" "$subscribe_keys" "$applied_dir/demo.json" "$vapid_key" "$token_key")
for path in "${secrets[@]}"; do
    case $path in /etc/realtime-glue/*) ;; *) fail "the glue role writes $path outside /etc/realtime-glue" ;; esac
done
in_ct install -d -o root -g realtime-glue -m 0750 "$key_dir"
in_ct install -d -o root -g root -m 0700 "$applied_dir"
in_ct sh -c "echo role-written-secret >'$password_file' && chown root:realtime-glue '$password_file' && chmod 0640 '$password_file'"
in_ct sh -c "head -c 32 /dev/urandom | base64 >'$key_dir/demo.encrypt.key' && chown realtime-glue: '$key_dir/demo.encrypt.key' && chmod 0600 '$key_dir/demo.encrypt.key'"
in_ct sh -c "echo '{\"keys\": {}}' >'$subscribe_keys' && chown realtime-glue: '$subscribe_keys' && chmod 0600 '$subscribe_keys'"
in_ct sh -c "echo '{}' >'$applied_dir/demo.json' && echo vapid >'$vapid_key' && echo token >'$token_key' && chmod 0600 '$vapid_key' '$token_key'"
in_ct install -d /etc/systemd/system/glue-restart@.timer.d
in_ct sh -c 'printf "[Timer]\nRandomizedDelaySec=1h\n" >/etc/systemd/system/glue-restart@.timer.d/50-window.conf'
in_ct find /etc/realtime-glue -printf '%M %u:%g %p\n'
purge_log=$(in_ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q realtime-glue 2>&1) \
    || { echo "$purge_log"; fail "apt-get purge failed"; }
echo "$purge_log"
if echo "$purge_log" | grep -Ei '(^|[^a-z])(error|warning)'; then
    fail "apt-get purge printed errors or warnings"
fi
dpkg_status=$(in_ct dpkg-query -W -f '${Status}' realtime-glue 2>/dev/null || true)
[[ -z $dpkg_status || $dpkg_status == *not-installed ]] || fail "dpkg still has realtime-glue: $dpkg_status"
for path in /etc/realtime-glue "${secrets[@]}" /var/lib/realtime-glue /var/log/realtime-glue /usr/bin/realtime-glue \
    /usr/lib/systemd/system/glue@.service /usr/lib/systemd/system/glue-readers.service \
    /etc/systemd/system/glue.target.wants /etc/systemd/system/glue-restart@.timer.d; do
    in_ct test ! -e "$path" || fail "$path is left after purge"
done
dangling=$(in_ct find /etc/systemd/system -xtype l -name '*glue*' -print)
[ -z "$dangling" ] || fail "dangling unit links left: $dangling"
[ "$(in_ct systemctl is-active glue@demo.service || true)" != active ] || fail "glue@demo still running"
in_ct pgrep -f 'realtime-glue run' && fail "a realtime-glue process is still running"
[ "$(in_ct systemctl is-active glue-readers.service || true)" != active ] || fail "glue-readers still running"
ok "package, config with the role's secrets, state, logs, units, drop-ins and instance links gone; nothing running"
if in_ct getent passwd realtime-glue >/dev/null; then
    echo "note: the system user realtime-glue stays after purge, as Debian does for system accounts"
fi

step "the push-stream module package ($module_package) on $suite"
# The stand-in push node leaves port 8080 to nginx (its cluster listener).
in_ct systemctl stop fake-push-node.service
# Our build is Debian 12's (packaging/out/repo/bookworm/).
ours=$(cd "$repo/bookworm" && ls ${module_package}_*.deb)
loads() { in_ct sh -c "printf 'load_module $module;\\nevents {}\\n' >/tmp/load.conf && nginx -q -t -c /tmp/load.conf"; }
case $suite in
    bookworm)
        in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$module_package" 2>&1 | tail -n 3
        installed=$(in_ct dpkg-query -W -f '${Version}' "$module_package")
        [ "$installed" = "$(dpkg-deb --field "$repo/bookworm/$ours" Version)" ] || fail "installed $module_package $installed, not ours"
        in_ct apt-cache madison "$module_package" | grep -F "$installed" | contains 'file:/srv/realtime-glue-repo' \
            || fail "$module_package $installed did not come from the repository"
        in_ct dpkg-query -W -f '${Depends}\n' "$module_package" | contains 'nginx-abi-1.22.1-7' \
            || fail "$module_package does not depend on Debian 12's nginx ABI"
        loads || fail "nginx does not load $module"
        ok "$module_package $installed from the repository (Depends: $(in_ct dpkg-query -W -f '${Depends}' "$module_package")); nginx $(in_ct dpkg-query -W -f '${Version}' nginx) loads it"
        ;;
    trixie)
        # Bad input: our Debian 12 build on Debian 13's nginx (another ABI).
        in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx 2>&1 | tail -n 1
        if refused=$(in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "/srv/realtime-glue-repo/bookworm/$ours" 2>&1); then
            echo "$refused"
            fail "apt installed $ours (built for Debian 12's nginx) on $suite"
        fi
        echo "$refused" | tail -n 6
        echo "$refused" | contains 'nginx-abi-1.22.1-7' || fail "apt's refusal does not name the nginx ABI"
        in_ct dpkg-query -W -f '${Status}' "$module_package" 2>/dev/null | contains '^install ok installed' \
            && fail "$module_package got installed anyway"
        in_ct systemctl is-active --quiet nginx.service || fail "nginx is not running after the refused install"
        ok "apt refused $ours: $(echo "$refused" | grep -m1 -o 'Depends: nginx-abi[^ ]*.*')"
        in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$module_package" 2>&1 | tail -n 3
        installed=$(in_ct dpkg-query -W -f '${Version}' "$module_package")
        in_ct apt-cache madison "$module_package" | grep -F "$installed" | contains 'deb.debian.org' \
            || fail "$module_package $installed is not Debian's"
        loads || fail "nginx does not load $module"
        ok "Debian's $module_package $installed (Depends: $(in_ct dpkg-query -W -f '${Depends}' "$module_package")); nginx $(in_ct dpkg-query -W -f '${Version}' nginx) loads it"
        ;;
esac

step "the subscribe signature module package (libnginx-mod-http-subscribe-signature) on $suite"
signature_package=libnginx-mod-http-subscribe-signature
signature_module=/usr/lib/nginx/modules/ngx_http_subscribe_signature_module.so
case $suite in
    bookworm) release_number=12 other=trixie abi=nginx-abi-1.22.1-7 ;;
    trixie) release_number=13 other=bookworm abi=nginx-abi-1.26.3-1 ;;
esac
in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$signature_package" 2>&1 | tail -n 3
installed=$(in_ct dpkg-query -W -f '${Version}' "$signature_package")
[[ $installed == *"~deb$release_number" ]] || fail "installed $signature_package $installed, not the build for Debian $release_number"
in_ct apt-cache madison "$signature_package" | contains 'file:/srv/realtime-glue-repo' \
    || fail "$signature_package $installed did not come from the repository"
[ "$(in_ct apt-cache madison "$signature_package" | wc -l)" = 1 ] \
    || fail "apt sees more than one $signature_package: $(in_ct apt-cache madison "$signature_package")"
in_ct dpkg-query -W -f '${Depends}\n' "$signature_package" | contains "$abi" \
    || fail "$signature_package does not depend on $abi"
# A server with the check: a good key loads, a short one fails `nginx -t` naming it.
check_conf() {
    in_ct_stdin tee /tmp/signature.conf >/dev/null <<CONF
load_module $signature_module;
events {}
http {
    subscribe_signature_key app-1 "$1";
    server {
        listen 127.0.0.1:8099;
        location ~ ^/ev/(?<channel>private-.+)\$ {
            subscribe_signature \$channel ev;
            return 204;
        }
    }
}
CONF
    in_ct nginx -t -c /tmp/signature.conf 2>&1
}
check_conf "$(head -c 32 /dev/zero | base64)" >/dev/null || fail "nginx does not load $signature_module with a good key: $(check_conf "$(head -c 32 /dev/zero | base64)")"
short=$(check_conf c2hvcnQ= || true)
echo "$short" | contains 'key "app-1" needs a secret of 32 bytes or more' || fail "nginx -t did not refuse a short key by name: $short"
ok "$signature_package $installed from the repository (Depends: $(in_ct dpkg-query -W -f '${Depends}' "$signature_package")); nginx loads it and refuses a short key by name"
# Bad input: the other release's build (another nginx ABI).
theirs=$(cd "$repo/$other" && ls ${signature_package}_*.deb)
if refused=$(in_ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades \
    "/srv/realtime-glue-repo/$other/$theirs" 2>&1); then
    echo "$refused"
    fail "apt installed $theirs (built for Debian $other's nginx) on $suite"
fi
echo "$refused" | contains 'nginx-abi-' || fail "apt's refusal of $theirs does not name the nginx ABI: $refused"
[ "$(in_ct dpkg-query -W -f '${Version}' "$signature_package")" = "$installed" ] || fail "$signature_package changed"
ok "apt refused $theirs: $(echo "$refused" | grep -m1 -o 'Depends: nginx-abi[^ ]*.*')"

step "passed ($suite)"
