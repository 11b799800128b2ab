#!/usr/bin/env bash
# The Debian package, end to end, as root on a throwaway Debian 12 machine (CI):
#
#   build (tools/build-deb) -> lintian -> dpkg -i -> petra --version, petra check,
#   systemd-analyze verify/security -> reinstall keeps local edits -> boot systemd in a
#   systemd-nspawn container and drive petra.service there: READY through sd_notify,
#   the demo cycles (petra-top --once --json), reload, a clean stop, the watchdog
#   restart after SIGSTOP of the supervisor, SCHED_FIFO + mlockall in rt mode ->
#   dpkg -r keeps configuration and data -> dpkg --purge leaves nothing.
#
#   tools/test-package.sh                  build, then test
#   PETRA_DEB=dist/petra_X_amd64.deb tools/test-package.sh    test a built package
#
# It installs and purges the package on this machine and refuses to run where petra
# is already installed. Exit status 0 only when every check passed; each check that
# fails says what it saw.
#
# How the container sees the package: systemd-nspawn --volatile=yes boots the host's
# /usr on an empty, throwaway root. The package keeps everything it runs under /usr
# (/usr/lib/petra, the units, sysusers.d, the preset), so the container's systemd
# creates the petra user at boot from the package's own sysusers.d file; /etc/petra
# (the plant file, written by dpkg on the host) is bound in read-only. udev does not
# run in the container: the test creates /dev/cpu_dma_latency there the way the
# package's udev rule leaves it on a real box (group petra, mode 0660). The host's
# hard limits here (RLIMIT_RTPRIO 0, RLIMIT_MEMLOCK 8 MiB, no CAP_SYS_RESOURCE to raise
# them) cap the container's, so LimitRTPRIO/LimitMEMLOCK cannot take effect inside:
# the real-time check uses the package's capability drop-in instead (the container
# gets --capability=CAP_IPC_LOCK; CAP_SYS_NICE is in nspawn's default set).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# The installed commands, not a checkout's virtualenv that happens to be on PATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME
PETRA_TOOL=test-package
. tools/_env.sh

[ "$(id -u)" = 0 ] || { echo "test-package: run as root (it installs a package)" >&2; exit 2; }
if dpkg-query -W -f='${Status}' petra 2>/dev/null | grep -q 'installed\|config-files'; then
    echo "test-package: petra is already installed here; this test installs and purges" \
         "the package: purge it first (dpkg --purge petra) or use a throwaway machine" >&2
    exit 2
fi

t_start=$SECONDS
work=$(mktemp -d /tmp/petra-pkgtest.XXXXXX)
machine=petra-pkgtest-$$
nspawn_pid=
leader=
failures=0
declare -a timings=()

step() { petra_say "[$(printf '%3d' $((SECONDS - t_start)))s] $*"; }
ok() { printf '    ok   %s\n' "$*"; }
bad() { printf '    FAIL %s\n' "$*"; failures=$((failures + 1)); }
check() {  # check "what" command...: ok when the command succeeds
    local what=$1; shift
    if "$@" >"$work/check.out" 2>&1; then ok "$what"; else
        bad "$what"; sed 's/^/         | /' "$work/check.out" | tail -n 15; fi
}
fatal() { bad "$*"; exit 1; }
timed() {  # timed NAME command...: run, record the seconds it took
    local name=$1 t0; shift; t0=$(date +%s%N)
    "$@"
    timings+=("$name=$(( ($(date +%s%N) - t0) / 1000000 ))ms")
}

cleanup() {
    local rc=$?
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    # Never leave the package behind on a failure: later tests and jobs share the box.
    if dpkg-query -W -f='${Status}' petra 2>/dev/null | grep -q 'installed\|config-files'; then
        dpkg --purge petra >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
step "apt packages for building, checking and booting"
petra_apt_install debhelper dh-virtualenv dpkg-dev python3-venv python3-dev gcc lintian \
    systemd-container logrotate man-db

# ------------------------------------------------------------------ build
if [ -n "${PETRA_DEB:-}" ]; then
    deb=$(readlink -f "$PETRA_DEB")
    step "using $deb"
else
    step "building the package (tools/build-deb)"
    t0=$SECONDS
    PETRA_DEB_OUT=$work/dist tools/build-deb
    timings+=("build=$((SECONDS - t0))s")
    deb=$(ls "$work"/dist/petra_*.deb)
fi
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
ok "package $(basename "$deb"): $(du -h "$deb" | cut -f1), installed size \
$(( $(dpkg-deb -f "$deb" Installed-Size) / 1024 )) MiB"

# ------------------------------------------------------------------ lintian
step "lintian (errors and warnings fail; overrides only for /usr/lib/petra)"
t0=$SECONDS
if lintian --fail-on error,warning "$deb" >"$work/lintian.txt" 2>&1; then
    ok "lintian: no error, no warning ($((SECONDS - t0)) s)"
else
    bad "lintian:"; grep -v -E '^N:' "$work/lintian.txt" | sed 's/^/         | /' | head -40
fi
timings+=("lintian=$((SECONDS - t0))s")
overrides_ok() {  # every override in the package names a path under usr/lib/petra/
    local others
    others=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/lintian/overrides/petra |
        awk '!/^(#|$)/ && !/\[usr\/lib\/petra\/\*\]$/' |
        grep -v -x -F -e 'initial-upload-closes-no-bugs [usr/share/doc/petra/changelog.Debian.gz:1]' \
            -e 'package-supports-alternative-init-but-no-init.d-script [lib/systemd/system/petra.service]' \
        || true)
    echo "$others"; [ -z "$others" ]
}
check "lintian overrides only for /usr/lib/petra (and two named package-wide ones)" overrides_ok

# ------------------------------------------------------------------ install
step "dpkg -i"
timed install dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log"; fatal "dpkg -i"; }
ok "installed $version"
dpkg-query -L petra | sort >"$work/files.txt"

stat_is() {  # stat_is PATH MODE OWNER GROUP
    local got; got=$(stat -c '%a %U %G' "$1")
    [ "$got" = "$2 $3 $4" ] || { echo "$1: $got, expected $2 $3 $4"; return 1; }
}
is_conffile() { dpkg-query -W -f='${Conffiles}\n' petra | awk -v f="$1" '$1 == f {n++} END {exit !n}'; }
user_ok() {
    local home shell uid
    IFS=: read -r _ _ uid _ _ home shell < <(getent passwd petra) || { echo "no user petra"; return 1; }
    echo "uid $uid home $home shell $shell"
    [ "$home" = /var/lib/petra ] && [ "$shell" = /usr/sbin/nologin ] && [ "$uid" -lt 1000 ] &&
        getent group petra
}
users_ok() {
    stat_is /etc/petra/users.json 640 root petra &&
    /usr/bin/python3 -c 'import json; d = json.load(open("/etc/petra/users.json")); assert d["users"] == [], d' &&
    ! is_conffile /etc/petra/users.json
}
credentials_ok() { stat_is /etc/petra/credentials 700 root root && [ -z "$(ls -A /etc/petra/credentials)" ]; }
limits_ok() {
    grep -qE '^@petra +- +rtprio +95$' /etc/security/limits.d/petra.conf &&
    grep -qE '^@petra +- +memlock +unlimited$' /etc/security/limits.d/petra.conf
}
units_ok() {
    [ -f /lib/systemd/system/petra.service ] && [ -f /lib/systemd/system/petra@.service ] &&
    [ "$(systemctl is-enabled petra.service 2>/dev/null || true)" = disabled ]
}
check "user petra: system user, home /var/lib/petra, no login shell" user_ok
check "/etc/petra/plant.yaml is the demo and a conffile" \
    eval 'cmp /etc/petra/plant.yaml "$root/examples/demo-plant.yaml" && is_conffile /etc/petra/plant.yaml'
check "/etc/petra/users.json: no users, 0640 root:petra, not a conffile" users_ok
check "/etc/petra/credentials 0700 root, empty" credentials_ok
check "/var/lib/petra and /var/log/petra 0750 petra:petra" \
    eval 'stat_is /var/lib/petra 750 petra petra && stat_is /var/log/petra 750 petra petra'
check "limits for group petra: rtprio 95, memlock unlimited" limits_ok
check "udev rule gives /dev/cpu_dma_latency to group petra" \
    grep -q 'KERNEL=="cpu_dma_latency", GROUP="petra", MODE="0660"' /lib/udev/rules.d/60-petra.rules
check "logrotate accepts its configuration" logrotate -d /etc/logrotate.d/petra
check "man pages for the three commands" eval 'man -w petra && man -w petra-top && man -w petra-bench'
check "units and preset installed; petra.service disabled" units_ok

step "the commands"
check "petra --version says $upstream" eval '[ "$(petra --version)" = "petra $upstream" ]'
check "petra-top and petra-bench run" eval 'petra-top --version && petra-bench --version'
check "commands run the bundled interpreter" \
    bash -c 'head -1 /usr/lib/petra/bin/petra | grep -qx "#!/usr/lib/petra/bin/python"'
check "petra check /etc/petra/plant.yaml" petra check /etc/petra/plant.yaml
check "petra user list reads the installed users file: no users" \
    eval 'petra user list | tee /dev/stderr | grep -q "^no users in /etc/petra/users.json"'
unowned() { find /usr/lib/petra -type f | sort | comm -23 - "$work/files.txt"; }
check "root's runs wrote no byte-code the package does not own" eval '[ -z "$(unowned | tee /dev/stderr)" ]'

step "systemd-analyze (offline)"
for unit in petra.service petra@demo.service; do
    check "systemd-analyze verify $unit: no complaint" bash -c "
        out=\$(systemd-analyze verify $unit 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
done
exposure=$(systemd-analyze security --offline=yes /lib/systemd/system/petra.service 2>/dev/null \
           | sed -n 's/.*Overall exposure level for petra.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security: exposure ${exposure:-?} (< 3.0)" \
    /usr/bin/python3 -c "import sys; sys.exit(not float('${exposure:-99}') < 3.0)"

step "reinstall: idempotent, local edits kept"
uid=$(id -u petra)
echo "# local edit $$" >>/etc/petra/plant.yaml
/usr/bin/python3 -c 'import json; p = "/etc/petra/users.json"; d = json.load(open(p)); open(p, "w").write(json.dumps(d, indent=4))'
sha_users=$(sha256sum /etc/petra/users.json)
timed reinstall dpkg -i "$deb" >"$work/dpkg-i2.log" 2>&1 || { cat "$work/dpkg-i2.log"; fatal "second dpkg -i"; }
check "postinst ran again without error, same uid" bash -c "[ \"\$(id -u petra)\" = $uid ]"
check "edited plant.yaml kept" grep -q "# local edit $$" /etc/petra/plant.yaml
check "users.json untouched" bash -c "[ \"\$(sha256sum /etc/petra/users.json)\" = '$sha_users' ]"
sed -i "/# local edit $$/d" /etc/petra/plant.yaml

# A real-time variant of the demo for petra@rtcheck: rt mode refuses to start without
# SCHED_FIFO and mlockall, so an active unit is the proof. In /etc/petra (removed by
# the purge below).
sed -e 's/^  policy: other$/  policy: fifo\n  priority: 50\n  rt: true/' \
    -e 's/^instance: demo$/instance: rtcheck/' /etc/petra/plant.yaml >/etc/petra/rtcheck.yaml
check "rtcheck plant (fifo 50, rt) is valid" petra check /etc/petra/rtcheck.yaml
# A secret for LoadCredential=: root-only here, handed to the service by systemd.
secret=probe-$$-$RANDOM
install -m 0600 /dev/null /etc/petra/credentials/probe-secret
printf '%s' "$secret" >/etc/petra/credentials/probe-secret

# ------------------------------------------------------------------ container
step "boot systemd in a container (systemd-nspawn --volatile=yes)"
# Private network: the container's 127.0.0.1:9120 is its own. systemd.firstboot=off:
# an empty /etc would otherwise ask for a locale and a root password.
t0=$(date +%s%N)
systemd-nspawn -D / --volatile=yes --bind-ro=/etc/petra --private-network \
    --register=no --keep-unit --console=passive --capability=CAP_IPC_LOCK -M "$machine" \
    -b -- systemd.firstboot=off >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1 (its init): a child or grandchild of nspawn that is PID 1 in its
# own namespace. nspawn's first child is a short-lived helper that sets up the mounts and
# forks the init; on a loaded box it is still there when we look, and entering its
# namespaces gives an empty answer from systemctl for the whole boot.
container_init() {
    local p c
    for p in $(pgrep -P "$nspawn_pid" || true); do
        for c in "$p" $(pgrep -P "$p" || true); do
            awk '/^NSpid:/ { exit !(NF > 2 && $NF == 1) }' "/proc/$c/status" 2>/dev/null &&
                { echo "$c"; return 0; }
        done
    done
    return 1
}
leader=
for _ in $(seq 300); do leader=$(container_init || true); [ -n "$leader" ] && break; sleep 0.1; done
[ -n "$leader" ] || { cat "$work/nspawn.log"; fatal "the container did not start (no init in 30 s)"; }
ct() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
for _ in $(seq 300); do
    state=$(ct systemctl is-system-running 2>/dev/null || true)
    case $state in ''|offline) sleep 0.2 ;; *) break ;; esac
done
state=$(timeout 120 nsenter -t "$leader" -a systemctl is-system-running --wait 2>/dev/null || true)
timings+=("boot=$(( ($(date +%s%N) - t0) / 1000000 ))ms")
case $state in
    running|degraded) ok "container up ($state; failed units, if any, are not Petra's: \
$(ct systemctl --failed --plain --no-legend 2>/dev/null | awk '{print $1}' | tr '\n' ' '))" ;;
    *) tail -20 "$work/nspawn.log"; fatal "container state '$state'" ;;
esac
check "petra user made by sysusers.d at boot" ct getent passwd petra
check "petra.service disabled by its preset, inactive" bash -c "
    [ \"\$(nsenter -t $leader -a systemctl is-enabled petra 2>/dev/null || true)\" = disabled ] &&
    ! nsenter -t $leader -a systemctl is-active -q petra"
if [ -c /dev/cpu_dma_latency ]; then
    ct sh -c 'mknod -m 0660 /dev/cpu_dma_latency c 10 259 && chgrp petra /dev/cpu_dma_latency' ||
        fatal "mknod /dev/cpu_dma_latency in the container"
    dma=yes
else
    dma=no; ok "no /dev/cpu_dma_latency on this kernel: the dma hold is not checked"
fi

svc() { ct systemctl show "$1" -p "$2" --value; }
journal_has() { ct journalctl -u "$1" --no-pager -o cat | grep -q -- "$2"; }

step "systemctl start petra: active once READY=1 arrives"
timed start ct timeout 120 systemctl start petra || true
check "active (running)" bash -c "[ '$(svc petra ActiveState)/$(svc petra SubState)' = active/running ]"
check "status from sd_notify: 'demo: running'" bash -c "[ '$(svc petra StatusText)' = 'demo: running' ]"
main1=$(svc petra MainPID)
check "supervisor and scan run as petra" bash -c "
    users=\$(nsenter -t $leader -a ps -o user= --ppid $main1 -p $main1 | sort -u | tr -d ' ')
    echo \"\$users\"; [ \"\$users\" = petra ]"
check "journal: first cycle, then ready" journal_has petra "event=plant_ready"
if [ "$dma" = yes ]; then
    check "the hardened scan holds /dev/cpu_dma_latency (group petra)" journal_has petra "dma_hold=True"
fi

as_petra() { ct setpriv --reuid=petra --regid=petra --clear-groups "$@"; }
check "a credential reaches the service as /run/credentials/petra.service/petra_FILE" \
    eval '[ "$(as_petra cat /run/credentials/petra.service/petra_probe-secret)" = "$secret" ]'
check "user petra cannot read the secret where root keeps it" \
    eval '! as_petra cat /etc/petra/credentials/probe-secret'

top_json() { ct petra-top --once --json --instance demo; }
step "the demo cycles (petra-top --once --json)"
{ top_json >"$work/top1.json" && sleep 1 && top_json >"$work/top2.json"; } || bad "petra-top --once --json"
check "instance demo, 10 ms period, cycles advance, scan and supervisor alive, signals" \
    /usr/bin/python3 - "$work/top1.json" "$work/top2.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert b["instance"] == "demo", b["instance"]
assert b["scan"]["period_us"] == 10000, b["scan"]
assert b["scan"]["cycles"] > a["scan"]["cycles"] > 0, (a["scan"]["cycles"], b["scan"]["cycles"])
roles = {p["role"]: p for p in b["processes"]}
assert {"supervisor", "scan"} <= set(roles), roles.keys()
assert all(roles[r]["alive"] for r in ("supervisor", "scan")), roles
names = set(b["signals"]) if isinstance(b["signals"], dict) else {s["name"] for s in b["signals"]}
assert {"tank.level", "tank.level_sp", "valve.cmd"} <= names, sorted(names)[:10]
print("cycles", a["scan"]["cycles"], "->", b["scan"]["cycles"])
EOF

step "systemctl reload petra (SIGHUP: hot reload)"
ct systemctl reload petra || bad "systemctl reload petra"
for _ in $(seq 100); do journal_has petra "event=reload_ok" && break; sleep 0.2; done
check "reload_ok logged, still active, no restart" bash -c "
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q event=reload_ok &&
    [ '$(svc petra ActiveState)' = active ] && [ '$(svc petra NRestarts)' = 0 ]"

step "systemctl stop petra: clean"
timed stop ct timeout 60 systemctl stop petra || true
check "inactive, result success, exit status 0" bash -c \
    "[ '$(svc petra ActiveState)/$(svc petra Result)/$(svc petra ExecMainStatus)' = inactive/success/0 ]"
check "scan stopped at a cycle boundary, plant_stopped logged" bash -c "
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q 'event=scan_stop' &&
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q 'event=plant_stopped'"
check "no petra process left, segment removed" bash -c "
    ! nsenter -t $leader -a pgrep -u petra && ! nsenter -t $leader -a test -e /dev/shm/petra.demo"

step "watchdog: SIGSTOP the supervisor, systemd restarts the service"
ct timeout 120 systemctl start petra || true
main1=$(svc petra MainPID)
t0=$(date +%s%N)
ct kill -STOP "$main1"
restarted=no
for _ in $(seq 400); do
    if [ "$(svc petra NRestarts)" -ge 1 ] && [ "$(svc petra ActiveState)" = active ] &&
       [ "$(svc petra SubState)" = running ] && [ "$(svc petra MainPID)" != "$main1" ]; then
        restarted=yes; break
    fi
    sleep 0.25
done
wd_ms=$(( ($(date +%s%N) - t0) / 1000 / 1000 ))
timings+=("watchdog_restart=${wd_ms}ms")
check "restarted and ready again ${wd_ms} ms after SIGSTOP (WatchdogSec=10, RestartSec=2)" \
    [ "$restarted" = yes ]
check "journal: watchdog timeout, the hung supervisor's Python stack, stale segment replaced" bash -c "
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q 'Watchdog timeout' &&
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q 'Fatal Python error: Aborted' &&
    nsenter -t $leader -a journalctl -u petra -o cat | grep -q 'event=stale_segment_replaced'"
{ top_json >"$work/top3.json" && sleep 1 && top_json >"$work/top4.json"; } || bad "petra-top --once --json"
check "the restarted demo cycles" /usr/bin/python3 -c "
import json, sys
a, b = (json.load(open(p))['scan']['cycles'] for p in sys.argv[1:3])
assert b > a > 0, (a, b)" "$work/top3.json" "$work/top4.json"
ct timeout 60 systemctl stop petra || true
check "stopped after the restart" bash -c "[ '$(svc petra ActiveState)' = inactive ]"

step "real time under the hardened unit: petra@rtcheck with the capability drop-in"
ct sh -c 'mkdir -p /etc/systemd/system/petra@rtcheck.service.d &&
          cp /usr/share/petra/systemd/rt-capabilities.conf /etc/systemd/system/petra@rtcheck.service.d/ &&
          systemctl daemon-reload' || bad "installing the drop-in in the container"
timed start_rt ct timeout 60 systemctl start petra@rtcheck || true
check "petra@rtcheck active (rt mode refuses to start without SCHED_FIFO and mlockall)" \
    bash -c "[ '$(svc petra@rtcheck ActiveState)' = active ]"
scan_pid=$(ct pgrep -u petra -f 'petra scan /etc/petra/rtcheck.yaml' || true)
check "scan: user petra, SCHED_FIFO priority 50, memory locked" bash -c "
    [ -n '$scan_pid' ] &&
    nsenter -t $leader -a ps -o user=,cls=,rtprio= -p '$scan_pid' | tee /dev/stderr |
        grep -qE '^petra +FF +50\$' &&
    nsenter -t $leader -a grep -E '^VmLck:[[:space:]]+[1-9]' /proc/$scan_pid/status"
ct timeout 60 systemctl stop petra@rtcheck || true
check "petra@rtcheck stopped cleanly" bash -c \
    "[ '$(svc petra@rtcheck ActiveState)/$(svc petra@rtcheck Result)' = inactive/success ]"

step "container power-off"
kill -TERM "$nspawn_pid"
for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
check "container gone" bash -c "! kill -0 $nspawn_pid 2>/dev/null"
nspawn_pid=

# ------------------------------------------------------------------ remove, purge
step "dpkg -r: program gone, configuration and data kept"
timed remove dpkg -r petra >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log"; fatal "dpkg -r"; }
check "commands and /usr/lib/petra gone" bash -c '! command -v petra && [ ! -e /usr/lib/petra ]'
check "plant.yaml, users.json, /var/lib/petra and the user kept" bash -c \
    '[ -f /etc/petra/plant.yaml ] && [ -f /etc/petra/users.json ] && [ -d /var/lib/petra ] &&
     getent passwd petra'

step "dpkg --purge: nothing left"
timed purge dpkg --purge petra >"$work/dpkg-p.log" 2>&1 || { cat "$work/dpkg-p.log"; fatal "purge"; }
check "not known to dpkg any more" bash -c '! dpkg-query -W petra 2>/dev/null'
check "no file the package shipped remains (directories shared with others excepted)" bash -c "
    while read -r f; do [ -d \"\$f\" ] && continue
        [ -e \"\$f\" ] || [ -L \"\$f\" ] && echo \"left: \$f\"; done <'$work/files.txt' | \
    tee /dev/stderr | (! grep -q .)"
check "no Petra directory remains" bash -c '
    for d in /etc/petra /var/lib/petra /var/log/petra /run/petra /usr/lib/petra \
             /usr/share/petra /usr/share/doc/petra; do [ -e "$d" ] && echo "left: $d"; done | \
    tee /dev/stderr | (! grep -q .)'
check "user and group petra removed" bash -c '! getent passwd petra && ! getent group petra'
check "no file owned by the old uid $uid" bash -c "
    find /etc /var /usr /run /dev/shm /tmp /opt /srv -xdev -uid $uid 2>/dev/null | head |
    tee /dev/stderr | (! grep -q .)"

# ------------------------------------------------------------------ summary
total=$((SECONDS - t_start))
step "done in ${total} s: ${timings[*]}"
if ((failures)); then
    petra_say "$failures check(s) FAILED"
    exit 1
fi
petra_say "all checks passed"
