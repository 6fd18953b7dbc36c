#!/bin/bash
# Runs inside the VM of `Scripts/package --check-service`, as a oneshot unit under systemd (PID 1):
# installs the .deb, runs mt-agent.service with the sandbox it ships on real SCSI disks —
# replication with O_DIRECT target writes, recovery points, failover both ways, commit, drain —
# then purges. One line per check (PASS/FAIL) and a last line `RESULT fails=N` on stdout, which
# the unit sends to the second serial port. Disks are found by identity (WWN), never by name.
set -uo pipefail
exec 2>&1
fails=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
step() { echo "== $*"; }
trap 'echo "RESULT fails=$fails"' EXIT

DEB=$(cat /etc/mt-service-check/deb)
TARGET_WWID=35000c5000000a001
TARGET=$(readlink -f /dev/disk/by-id/wwn-0x5000c5000000a001)
RETENTION=$(readlink -f /dev/disk/by-id/wwn-0x5000c5000000b002)
unit_value() { systemctl show -p "$1" --value mt-agent.service; }

step "$(systemctl --version | head -1), kernel $(uname -r), PID 1 $(cat /proc/1/comm); target $TARGET, retention $RETENTION"
[ -b "$TARGET" ] && [ -b "$RETENTION" ] || bad "the two SCSI disks are not there"

step "install"
dpkg -i "$DEB" >/dev/null && ok "dpkg -i $(basename "$DEB")" || bad "dpkg -i"
[ "$(systemctl is-enabled mt-agent.service)" = disabled ] && ok "installed, not enabled" || bad "is-enabled: $(systemctl is-enabled mt-agent.service)"
systemctl is-active --quiet mt-agent.service && bad "started by the install" || ok "not started by the install"
plan=$(mt-agent setup --dry-run 2>&1)
for s in udev service-unit config; do
    grep -Eq "^  done +$s " <<<"$plan" && ok "setup: step $s is done (the package's file)" || bad "setup: step $s is not done: $(grep " $s " <<<"$plan")"
done

step "retention volume, TLS identity, passphrase key, target"
mkfs.ext4 -q -F -L mt-retention "$RETENTION" && mkdir -p /mnt/retention && mount "$RETENTION" /mnt/retention || bad "retention volume"
(umask 077 && echo "service check passphrase" >/root/pass)
FP=$(mt-agent lab init /root/lab --passphrase-file /root/pass --retention /mnt/retention --fast-kdf) || bad "lab init"
install -d -m 0755 /etc/mt-agent/tls
install -m 0644 /root/lab/cert.pem /etc/mt-agent/tls/cert.pem
install -m 0600 /root/lab/key.pem /etc/mt-agent/tls/key.pem
install -m 0600 /root/lab/passphrase.key /etc/mt-agent/passphrase.key
mt-agent targets assign "$TARGET_WWID" --group g1 >/dev/null && ok "targets assign $TARGET_WWID" || bad "targets assign"

step "start"
systemctl start mt-agent.service && ok "started: READY=1 reached" || bad "start"
[ "$(unit_value ActiveState)" = active ] && ok "active: $(unit_value StatusText)" || bad "not active"
[ "$(unit_value WatchdogUSec)" = 5min ] && [ -n "$(unit_value WatchdogTimestamp)" ] && ok "watchdog 5min, pinged" || bad "watchdog: $(unit_value WatchdogUSec) $(unit_value WatchdogTimestamp)"
PID=$(unit_value MainPID)
grep -E '^(CapBnd|NoNewPrivs|Seccomp):' "/proc/$PID/status" | tr '\t' ' '
nsenter -t "$PID" -m awk '$5 ~ "^/(usr|etc|home|root|mnt/retention|sys)$" {print "  " $5 " " $6}' /proc/self/mountinfo

step "replication onto $TARGET by the service"
send() { mt-agent send "$@" --source /root/src.img --pair p1 --target "$TARGET_WWID" --group g1 --to 127.0.0.1:9443 \
    --fingerprint "$FP" --passphrase-file /root/pass --json >/dev/null 2>/root/send.log; }
head -c 32M /dev/urandom >/root/src.img
send resync && ok "send resync" || bad "send resync: $(tail -1 /root/send.log)"
send follow --interval 1 --cycles 3 && ok "send follow: crash tags" || bad "send follow: $(tail -1 /root/send.log)"
mt-agent status >/dev/null && ok "status over the control socket" || bad "status exit $?"
head -c 4M /dev/urandom | dd of=/root/src.img bs=1M seek=8 conv=notrunc status=none
send follow --interval 1 --cycles 2 && ok "send follow after 4 MiB changed" || bad "send follow: $(tail -1 /root/send.log)"
LATEST=$(sha256sum </root/src.img)
[ "$(head -c 32M "$TARGET" | sha256sum)" = "$LATEST" ] && ok "the target holds the source's bytes" || bad "the target differs from the source"

step "failover to the oldest point and back, commit (rollbacks by the service)"
OLDEST=$(mt-agent points --group g1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["points"][-1]["id"])')
mt-agent failover --group g1 --point "$OLDEST" --yes >/dev/null && ok "failover to point $OLDEST" || bad "failover to $OLDEST"
[ "$(head -c 32M "$TARGET" | sha256sum)" != "$LATEST" ] && ok "the target went back" || bad "the target did not change"
mt-agent failover --group g1 --point latest --yes >/dev/null && ok "failover to latest" || bad "failover to latest"
[ "$(head -c 32M "$TARGET" | sha256sum)" = "$LATEST" ] && ok "the target holds the latest content" || bad "the target is not at the latest"
mt-agent commit --group g1 >/dev/null && ok "commit" || bad "commit"

step "health"
[ "$(unit_value NRestarts)" = 0 ] && [ "$(unit_value ActiveState)" = active ] && ok "no restart" || bad "restarts: $(unit_value NRestarts)"
journal=$(journalctl -u mt-agent.service --no-pager -o cat)
if grep -Ei 'not permitted|permission denied|failed to set|SIGSYS|error' <<<"$journal"; then
    bad "errors in the service's journal"
else
    ok "nothing denied or failed in the service's journal"
fi
systemd-analyze security mt-agent.service --no-pager | tail -1

step "reload (systemctl reload: SIGHUP)"
conf=/etc/mt-agent/mt-agent.conf
settings() { mt-agent status --json | python3 -c 'import json, sys; s = json.load(sys.stdin)["settings"]; print(s["rpoThresholdSeconds"], ",".join(s["restartNeeded"]) or "-")'; }
# ExecReload only sends the signal: wait (10 s at most) for the service's answer in the journal.
reloaded() {
    local n seen
    n=$(journalctl -u mt-agent.service --no-pager -o cat | grep -c "$1")
    systemctl reload mt-agent.service || bad "systemctl reload"
    for _ in $(seq 100); do
        seen=$(journalctl -u mt-agent.service --no-pager -o cat | grep "$1")
        if [ "$(grep -c . <<<"$seen")" -gt "$n" ]; then tail -1 <<<"$seen"; return; fi
        sleep 0.1
    done
}
sed -i 's|^rpo_threshold = .*|rpo_threshold = 7m|; s|^port = .*|port = 9444|' "$conf"
line=$(reloaded 'configuration reloaded')
grep -q 'applied=rpo_threshold' <<<"$line" && grep -q 'restart_needed=port' <<<"$line" && ok "reloaded: ${line#*: }" || bad "reload log: $line"
[ "$(settings)" = "420 port" ] && ok "status: rpo_threshold 420 s, port needs a restart" || bad "status settings: $(settings)"
sed -i 's|^rpo_threshold = .*|rpo_threshold = soon|' "$conf"
line=$(reloaded 'configuration not reloaded')
grep -q 'rpo_threshold: "soon" is not a duration' <<<"$line" && ok "invalid file refused: ${line#*: }" || bad "no refusal logged: $line"
sed -i 's|^rpo_threshold = .*|rpo_threshold = 15m|; s|^port = .*|port = 9443|' "$conf"
reloaded 'configuration reloaded' >/dev/null
[ "$(settings)" = "900 -" ] && ok "back to the file's settings" || bad "status settings: $(settings)"
[ "$(unit_value NRestarts)" = 0 ] && [ "$(unit_value MainPID)" = "$PID" ] && [ "$(unit_value ActiveState)" = active ] \
    && ok "the same process throughout, still active" || bad "after reloads: pid $(unit_value MainPID), restarts $(unit_value NRestarts)"

step "stop"
systemctl stop mt-agent.service
[ "$(unit_value Result)" = success ] && [ "$(unit_value ExecMainStatus)" = 0 ] && ok "drained, exit 0" || bad "stop: $(unit_value Result) $(unit_value ExecMainStatus)"

step "a retention volume under /root (read-only for the service)"
umount /mnt/retention && mkdir -p /root/ret && mount "$RETENTION" /root/ret
sed -i 's|^retention_path = .*|retention_path = /root/ret|' /etc/mt-agent/mt-agent.conf
systemctl start mt-agent.service 2>/dev/null && bad "started" || true
why=$(journalctl -u mt-agent.service --no-pager -o cat | grep 'retention volume /root/ret is not usable' | tail -1)
[ -n "$why" ] && ok "refused: ${why#mt-agent: error: }" || bad "no retention refusal in the journal"
systemctl stop mt-agent.service; systemctl reset-failed mt-agent.service 2>/dev/null
umount /root/ret
sed -i 's|^retention_path = .*|retention_path = /mnt/retention|' /etc/mt-agent/mt-agent.conf

step "enabled and running, then purged"
mount "$RETENTION" /mnt/retention
systemctl enable mt-agent.service 2>/dev/null && systemctl start mt-agent.service && ok "enabled and started" || bad "enable/start"
rm -rf /etc/mt-agent/tls /etc/mt-agent/passphrase.key   # setup's files; setup --revert would remove them
dpkg --purge mt-agent >/dev/null && ok "dpkg --purge" || bad "dpkg --purge"
systemctl is-active --quiet mt-agent.service && bad "still running" || ok "stopped by the removal"
ls /etc/systemd/system/*.wants/mt-agent.service >/dev/null 2>&1 && bad "enablement left" || ok "enablement forgotten"
left=$(for p in /usr/bin/mt-agent /usr/lib/systemd/system/mt-agent.service /usr/lib/udev/rules.d/69-mt-agent.rules /etc/mt-agent /var/lib/mt-agent; do
    if [ -e "$p" ]; then echo "$p"; fi
done)
[ -z "$left" ] && ok "no file of the package left" || bad "left: $left"
[ -d /mnt/retention/mt-agent ] && ok "the retention volume's data kept" || bad "retention data gone"
