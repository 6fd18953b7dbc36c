#!/bin/busybox sh
# PID 1 of the mt-agent test VMs (Scripts/vm-test, Scripts/vm-fixtures). Busybox only, no udev unless
# asked. Kernel messages and this script's chatter go to ttyS0; the results go to ttyS1 as sections
#   @@MT-BEGIN <name>  ...  @@MT-END <name> rc=<exit code>
# which Scripts/lib/vm_assert.py reads back. Kernel command line: mt.scenario=NAME mt.mode=test|collect
# mt.udev=0|1.
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /mnt /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp

SCENARIO= MODE=test UDEV=0
for p in $(cat /proc/cmdline); do
    case $p in
        mt.scenario=*) SCENARIO=${p#*=} ;;
        mt.mode=*) MODE=${p#*=} ;;
        mt.udev=*) UDEV=${p#*=} ;;
    esac
done

log() { echo "mt-init [$(cut -d' ' -f1 /proc/uptime)]: $*"; }
finish() {
    sync
    echo o > /proc/sysrq-trigger   # power off now; -no-reboot ends qemu if this should fail
    poweroff -f
    sleep 5
    exit 1
}

stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
begin() { echo "@@MT-BEGIN $1" >&3; }
end() { echo "@@MT-END $1 rc=$2" >&3; }
fatal() { begin error; echo "$*" >&3; end error 1; log "FATAL: $*"; finish; }

[ -n "$SCENARIO" ] && [ -f /mt/scenarios/$SCENARIO.sh ] || fatal "no guest script for scenario '$SCENARIO'"

while read -r m; do
    insmod "$m" 2>/tmp/insmod.err || { grep -q 'File exists' /tmp/insmod.err || log "insmod $m: $(cat /tmp/insmod.err)"; }
done < /mt/modules
grep -q configfs /proc/filesystems && mount -t configfs configfs /sys/kernel/config

. /mt/scenarios/$SCENARIO.sh

count_disks() {  # visible block devices (not loop/ram, not hidden NVMe multipath paths)
    n=0
    for b in /sys/block/*; do
        case ${b##*/} in loop*|ram*|zram*) continue ;; esac
        [ "$(cat $b/hidden 2>/dev/null)" = 1 ] || n=$((n + 1))
    done
    echo $n
}
wait_disks() {  # n seconds
    i=0
    while [ "$(count_disks)" -lt "$1" ]; do
        i=$((i + 1))
        [ $i -gt $(($2 * 10)) ] && fatal "expected $1 block devices, have: $(ls /sys/block | tr '\n' ' ')"
        sleep 0.1
    done
}
mt_mount_fs() {  # label mountpoint
    dev=$(findfs LABEL=$1) || fatal "no filesystem labelled $1"
    mkdir -p $2 && mount -t ext4 $dev $2 || fatal "mount $dev $2 failed"
}

log "modules loaded"
wait_disks "$MT_QEMU_DISKS" 30
(set -e; mt_setup) > /tmp/setup.log 2>&1 || { cat /tmp/setup.log; fatal "scenario setup failed: $(cat /tmp/setup.log)"; }
wait_disks "$MT_ALL_DISKS" 30
mt_mounts
log "disks ready"

hex() { od -An -v -tx1 "$1" 2>/dev/null | tr -d ' \n'; }
# What sysfs says, independent of mt-agent: the ground truth the assertions compare with.
dump_sysfs() {
    for b in /sys/block/*; do
        n=${b##*/}
        case $n in loop*|ram*|zram*) continue ;; esac
        echo "disk $n"
        [ -r $b/dev ] && echo "dev $(cat $b/dev)"
        [ "$(cat $b/hidden 2>/dev/null)" = 1 ] && echo "hidden 1"
        echo "size $(cat $b/size)"
        echo "ro $(cat $b/ro)"
        echo "lbs $(cat $b/queue/logical_block_size)"
        echo "holders $(ls $b/holders | tr '\n' ' ')"
        echo "parts $(cd $b && ls -d ${n}* 2>/dev/null | tr '\n' ' ')"
        for f in wwid eui nguid uuid nsid serial; do [ -r $b/$f ] && echo "ns_$f $(cat $b/$f)"; done
        [ -d $b/dm ] && echo "dm_name $(cat $b/dm/name)" && echo "dm_uuid $(cat $b/dm/uuid)"
        if [ -e $b/device ]; then
            d=$(readlink -f $b/device)
            for f in vendor model rev wwid serial; do [ -r $d/$f ] && echo "$f $(cat $d/$f)"; done
            [ -r $d/vpd_pg83 ] && echo "vpd_pg83 $(hex $d/vpd_pg83)"
            [ -r $d/vpd_pg80 ] && echo "vpd_pg80 $(hex $d/vpd_pg80)"
            case ${d##*/} in
                *:*:*:*)
                    echo "hctl ${d##*/}"
                    h=$(echo "$d" | grep -o '/host[0-9]*/' | tail -1 | tr -d /)
                    echo "hba $(cat /sys/class/scsi_host/$h/proc_name)"
                    ;;
            esac
            [ -e $d/driver ] && echo "device_driver $(basename $(readlink $d/driver))"
        fi
    done
    echo "dmi_sys_vendor $(cat /sys/class/dmi/id/sys_vendor)"
    echo "dmi_product_name $(cat /sys/class/dmi/id/product_name)"
}

run() {  # section, command...
    s=$1
    shift
    begin "$s"
    "$@" >&3 2>/tmp/stderr
    rc=$?
    end "$s" $rc
    log "$s: exit $rc"
    if [ -s /tmp/stderr ]; then
        begin "$s.stderr"
        head -c 20000 /tmp/stderr >&3
        end "$s.stderr" 0
    fi
}

run_agent() {  # suffix
    run "disks$1" mt-agent disks --json
    run "check$1" mt-agent check enable-uuid --json
}

# collect -> disks --root: the capture must give the live inventory back.
roundtrip() {
    rm -rf /tmp/rt
    run collect-rt mt-agent collect /tmp/rt
    run disks-root mt-agent disks --json --root /tmp/rt
    run check-root mt-agent check enable-uuid --json --root /tmp/rt
}

collect() {
    rm -rf /tmp/capture
    mt-agent collect /tmp/capture >/tmp/collect.log 2>&1 || fatal "mt-agent collect failed: $(cat /tmp/collect.log)"
    # the capture as tar.gz, base64 over the data channel
    begin collect
    (cd /tmp/capture && tar -czf - .) | base64 >&3
    end collect 0
}

[ -x /usr/local/bin/mt-agent ] || fatal "no mt-agent in the initramfs"
run sysfs dump_sysfs
run_agent ""
[ "$MODE" = test ] && roundtrip
if [ "$UDEV" = 1 ]; then
    log "starting systemd-udevd"
    /lib/systemd/systemd-udevd --daemon --resolve-names=never >/tmp/udevd.log 2>&1
    udevadm trigger --type=subsystems --action=add
    udevadm trigger --type=devices --action=add
    # dm devices made before udevd ran (DM_DISABLE_UDEV) get their DM_* properties only on "change"
    udevadm trigger --type=devices --action=change --subsystem-match=block --sysname-match='dm-*'
    udevadm settle --timeout=60 || log "udevadm settle timed out"
    begin udev
    for b in /sys/block/*; do
        case ${b##*/} in loop*|ram*|zram*) continue ;; esac
        echo "disk ${b##*/}"
        udevadm info --query=property --path=$b | grep -E '^(ID_SERIAL|ID_SERIAL_SHORT|ID_WWN|ID_WWN_WITH_EXTENSION|ID_SCSI_SERIAL|ID_VENDOR|ID_MODEL|ID_BUS|ID_PATH|DM_UUID|DM_NAME|ID_FS_TYPE|ID_FS_UUID|ID_FS_LABEL|DEVLINKS)='
    done >&3
    end udev 0
    run_agent "-udev"
fi
[ "$MODE" = collect ] && collect
begin done
end done 0
finish
