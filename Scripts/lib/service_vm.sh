# `Scripts/package --check-service` (sourced): runs mt-agent.service, as the .deb installs it, under
# systemd as PID 1 — the one way to know the unit's sandbox leaves the service what it needs.
#
# A qemu VM (TCG, Debian's kernel from Scripts/vm-test's cache) boots this machine's own root
# filesystem: shared read-only over 9p, with a tmpfs overlaid so nothing reaches the host, and
# /tmp and /var/tmp empty. Its busybox initramfs loads the modules, assembles that root and
# switch_roots into /lib/systemd/systemd with systemd.unit=mt-service-check.target, whose oneshot
# service runs Scripts/lib/service_check.sh and powers off. Two virtio-SCSI disks with WWNs: the
# target and the retention volume. The script's lines come back over the second serial port.
# Needs systemd, python3 and e2fsprogs installed here (they are what the VM runs); about 5 minutes.

service_vm_check() {  # deb
    local deb=$1 work kroot kver m rc=0
    # shellcheck source=vm_common.sh
    . "$REPO/Scripts/lib/vm_common.sh"
    vm_require_tools
    vm_init_workdir
    vm_kernel   # Scripts/vm-test's kernel cache: the .deb downloaded once, a module subset unpacked
    work=$VM_WORK

    # This VM needs 9p and overlayfs too: unpacked from the same kernel package, once.
    kroot="$VM_CACHE/service-$(basename "$VM_KROOT")"
    if [ ! -e "$kroot/.complete" ]; then
        local kdeb
        kdeb=$(ls "$VM_CACHE/$(basename "$VM_KROOT")"_*.deb 2>/dev/null | tail -1 || true)
        [ -n "$kdeb" ] || vm_die "no kernel package in $VM_CACHE (Scripts/vm-test's cache)"
        rm -rf "$kroot"
        mkdir -p "$kroot"
        m='./lib/modules/*'
        dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$kroot" --wildcards "$m/modules.*" \
            "$m/kernel/fs/9p/*" "$m/kernel/net/9p/*" "$m/kernel/fs/overlayfs/*" "$m/kernel/fs/netfs/*" \
            "$m/kernel/fs/fscache/*" "$m/kernel/drivers/scsi/*" "$m/kernel/drivers/virtio/*" "$m/kernel/block/*" \
            "$m/kernel/lib/*" "$m/kernel/crypto/*" "$m/kernel/fs/ext4/*" "$m/kernel/fs/jbd2/*" "$m/kernel/fs/mbcache.ko*" \
            || vm_die "unpacking $kdeb failed"
        depmod -b "$kroot" "$VM_KVER" || vm_die "depmod failed"
        touch "$kroot/.complete"
    fi
    kver=$VM_KVER

    # The initramfs: busybox, the modules in dependency order, the init, and what goes into the root.
    local stage=$work/initramfs
    mkdir -p "$stage/bin" "$stage/mods" "$stage/payload/etc/systemd/system" "$stage/payload/etc/mt-service-check" \
        "$stage/payload/usr/local/sbin"
    cp /bin/busybox "$stage/bin/busybox"
    for m in virtio_pci virtio_scsi sd_mod 9pnet_virtio 9p overlay ext4 crc32c_generic; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" || vm_die "no module $m in $kver"
    done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r m; do
        cp "$m" "$stage/mods/" && echo "/mods/$(basename "$m")"
    done > "$stage/modules.list"
    cat > "$stage/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /lower /upper /newroot
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do insmod "$m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower || poweroff -f
mount -t tmpfs -o size=3g tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || poweroff -f
cp -a /payload/. /newroot/
# A container image's marker would make systemd think it runs in docker and ignore the kernel
# command line; the host's /tmp and /var/tmp would be walked through 9p by systemd-tmpfiles.
rm -f /newroot/.dockerenv
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
EOF
    chmod 0755 "$stage/init"
    cat > "$stage/payload/etc/systemd/system/mt-service-check.target" <<'EOF'
[Unit]
Description=mt-agent service check
Requires=mt-service-check.service
After=mt-service-check.service
EOF
    cat > "$stage/payload/etc/systemd/system/mt-service-check.service" <<'EOF'
[Unit]
Description=mt-agent service check
After=basic.target systemd-udev-settle.service
Wants=systemd-udev-settle.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/mt-service-check
StandardOutput=file:/dev/ttyS1
StandardError=file:/dev/ttyS1
TimeoutStartSec=900
EOF
    install -m 0755 "$REPO/Scripts/lib/service_check.sh" "$stage/payload/usr/local/sbin/mt-service-check"
    readlink -f "$deb" > "$stage/payload/etc/mt-service-check/deb"
    (cd "$stage" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"

    truncate -s 64M "$work/target.img"
    truncate -s 2G "$work/retention.img"
    log "booting this machine's root under systemd in a VM (TCG: about 5 minutes)"
    timeout "${MT_VM_TIMEOUT:-1200}" qemu-system-x86_64 -machine pc,accel=tcg -cpu max -m 3072 -smp 2 \
        -display none -no-reboot -kernel "$VM_VMLINUZ" -initrd "$work/initramfs.cpio" \
        -append "console=ttyS0 panic=-1 systemd.unit=mt-service-check.target systemd.show_status=0 quiet" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -device virtio-scsi-pci,id=scsi0 \
        -drive "file=$work/target.img,if=none,format=raw,id=target,cache=none" \
        -device scsi-hd,drive=target,bus=scsi0.0,wwn=0x5000c5000000a001 \
        -drive "file=$work/retention.img,if=none,format=raw,id=retention,cache=none" \
        -device scsi-hd,drive=retention,bus=scsi0.0,wwn=0x5000c5000000b002 \
        -serial "file:$work/console.log" -serial "file:$work/results.log" -monitor none \
        >"$work/qemu.log" 2>&1 &
    VM_PIDS+=($!)
    wait "${VM_PIDS[-1]}" || rc=$?
    sed 's/\r$//' "$work/results.log" >&2
    [ "$rc" = 0 ] || { tail -5 "$work/qemu.log" >&2; (grep -av '^\s*$' "$work/console.log" || true) | tail -25 >&2; die "the VM ended with status $rc"; }
    grep -qx 'RESULT fails=0' <(sed 's/\r$//' "$work/results.log") || die "the service check in the VM failed (above)"
    log "service check: mt-agent.service ran under systemd with its sandbox; every check passed"
}
