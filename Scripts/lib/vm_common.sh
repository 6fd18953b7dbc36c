# Shared by Scripts/vm-test and Scripts/vm-fixtures (sourced, not run): the kernel cache, the initramfs,
# and one qemu boot per scenario. Callers set REPO and call vm_init_workdir first.
#
# Environment:
#   MT_VM_CACHE        kernel cache (default: $REPO/.vm); reruns reuse the downloaded and unpacked kernel
#   MT_VM_KERNEL_PKG   kernel package (default: what Debian's linux-image-amd64 depends on)
#   MT_AGENT_BIN       the mt-agent binary to test (default: $REPO/.build/debug/mt-agent, built if missing)
#   MT_VM_KEEP=1       keep the work directory (images, initramfs, console logs) for debugging
#   MT_VM_TIMEOUT      seconds one VM may run before it counts as hung (default 300)
#   MT_VM_JOBS         VMs booted at once (default: CPUs + 1, at most 3)

VM_LIB="$REPO/Scripts/lib"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the work tree
VM_CACHE="${MT_VM_CACHE:-$REPO/.vm}"
VM_PIDS=()
VM_WORK=""

vm_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
vm_die() { echo "vm: error: $*" >&2; exit 1; }

vm_cleanup() {
    local pid
    for pid in "${VM_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    VM_PIDS=()
    if [ -n "$VM_WORK" ] && [ -d "$VM_WORK" ]; then
        if [ "${MT_VM_KEEP:-0}" = 1 ]; then
            vm_log "kept work directory $VM_WORK"
        else
            rm -rf "$VM_WORK"
        fi
    fi
}

vm_init_workdir() {
    VM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/mt-vm.XXXXXX")
    trap vm_cleanup EXIT
    trap 'exit 130' INT TERM HUP
}

# Host tools. Scripts/bootstrap installs them; a missing one is installed here the same way.
vm_require_tools() {
    local -A need=(
        [qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static [cpio]=cpio [modprobe]=kmod
        [depmod]=kmod [udevadm]=udev [dmsetup]=dmsetup [mkfs.ext4]=e2fsprogs [python3]=python3
    )
    local missing=() cmd
    for cmd in "${!need[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
    done
    [ -x /bin/busybox ] || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [ "$(id -u)" -eq 0 ] || vm_die "missing packages: ${missing[*]} (run Scripts/bootstrap as root)"
    vm_log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Sets VM_KVER, VM_KROOT (unpacked tree), VM_VMLINUZ. Downloads and unpacks the kernel package once.
vm_kernel() {
    local pkg="${MT_VM_KERNEL_PKG:-}" dir
    mkdir -p "$VM_CACHE"
    if [ -z "$pkg" ]; then
        # Reuse whatever kernel is already unpacked (newest first) before asking apt.
        dir=$(ls -d "$VM_CACHE"/linux-image-*/.complete 2>/dev/null | sort -V | tail -1 || true)
        if [ -n "$dir" ]; then
            pkg=$(basename "$(dirname "$dir")")
        else
            pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
            if [ -z "$pkg" ]; then
                vm_log "apt-get update (to find the kernel package)"
                apt-get update -qq >/dev/null 2>&1 || true
                pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
            fi
            [ -n "$pkg" ] || vm_die "cannot find Debian's linux-image-amd64 kernel package (apt-get update?)"
        fi
    fi
    VM_KROOT="$VM_CACHE/$pkg"
    if [ ! -e "$VM_KROOT/.complete" ]; then
        local deb
        deb=$(ls "$VM_CACHE/${pkg}"_*.deb 2>/dev/null | tail -1 || true)
        if [ -z "$deb" ]; then
            vm_log "downloading $pkg"
            (cd "$VM_CACHE" && apt-get download "$pkg" 2>&1 | grep -v -e unsandboxed -e '^Get:' -e '^Fetched' >&2) || true
            deb=$(ls "$VM_CACHE/${pkg}"_*.deb 2>/dev/null | tail -1 || true)
            [ -n "$deb" ] || vm_die "apt-get download $pkg failed"
        fi
        vm_log "unpacking $(basename "$deb")"
        rm -rf "$VM_KROOT"
        mkdir -p "$VM_KROOT"
        # Only the parts the VMs use: the kernel, storage drivers, device-mapper, LIO, ext4.
        local m='./lib/modules/*'
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$VM_KROOT" --wildcards \
            './boot/vmlinuz-*' "$m/modules.*" \
            "$m/kernel/drivers/scsi/*" "$m/kernel/drivers/message/*" "$m/kernel/drivers/target/*" \
            "$m/kernel/drivers/md/*" "$m/kernel/drivers/nvme/*" "$m/kernel/drivers/block/*" \
            "$m/kernel/drivers/virtio/*" "$m/kernel/block/*" "$m/kernel/crypto/*" "$m/kernel/lib/*" \
            "$m/kernel/fs/configfs/*" "$m/kernel/fs/ext4/*" "$m/kernel/fs/jbd2/*" "$m/kernel/fs/mbcache.ko*" \
            || vm_die "unpacking $deb failed"
        VM_KVER=$(ls "$VM_KROOT/lib/modules")
        depmod -b "$VM_KROOT" "$VM_KVER" || vm_die "depmod failed"
        touch "$VM_KROOT/.complete"
    fi
    VM_KVER=$(ls "$VM_KROOT/lib/modules")
    VM_VMLINUZ=$(ls "$VM_KROOT"/boot/vmlinuz-*)
}

# The mt-agent binary under test; builds it when it is the default and missing.
vm_agent_bin() {
    VM_AGENT="${MT_AGENT_BIN:-$REPO/.build/debug/mt-agent}"
    if [ ! -x "$VM_AGENT" ] && [ -z "${MT_AGENT_BIN:-}" ]; then
        vm_log "building mt-agent"
        (cd "$REPO" && swift build --product mt-agent >&2) || vm_die "swift build failed"
    fi
    [ -x "$VM_AGENT" ] || vm_die "no mt-agent binary at $VM_AGENT"
}

# Copy an executable and every library ldd lists (with the loader) into the staging tree.
_vm_copy_with_libs() {  # stage file...
    local stage=$1 f lib
    shift
    for f in "$@"; do
        mkdir -p "$stage$(dirname "$f")"
        if [ -L "$f" ]; then cp -a "$f" "$stage$f"; f=$(readlink -f "$f"); mkdir -p "$stage$(dirname "$f")"; fi
        [ -e "$stage$f" ] || cp -L "$f" "$stage$f"
        for lib in $(ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}'); do
            [ -e "$stage$lib" ] && continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done
    done
}

# vm_initramfs OUT — one initramfs for every scenario.
vm_initramfs() {
    local out=$1 stage="$VM_WORK/initramfs" mods m
    rm -rf "$stage"
    mkdir -p "$stage"/{usr/bin,usr/sbin,usr/lib,usr/lib64,usr/local/bin,etc,mt/scenarios,proc,sys,dev,run,tmp}
    ln -s usr/bin "$stage/bin"; ln -s usr/sbin "$stage/sbin"; ln -s usr/lib "$stage/lib"; ln -s usr/lib64 "$stage/lib64"
    _vm_copy_with_libs "$stage" /bin/busybox   # busybox-static: no libraries
    install -m 0755 "$VM_LIB/vm_init.sh" "$stage/init"
    python3 "$VM_LIB/vm_scenarios.py" guest-scripts "$stage/mt/scenarios" || vm_die "vm_scenarios.py failed"

    # Modules in dependency order, each once.
    mods=$(for m in sd_mod vmw_pvscsi mptsas virtio_pci virtio_scsi virtio_blk nvme configfs \
                    target_core_mod tcm_loop nvmet nvmet-tcp nvme-tcp dm-mod dm-multipath dm-round-robin ext4; do
               modprobe -d "$VM_KROOT" -S "$VM_KVER" --show-depends "$m" || vm_die "no module $m in $VM_KVER"
           done | awk '$1 == "insmod" && !seen[$2]++ {print $2}')
    # A dependency outside the unpacked part of the tree would be dropped silently by --show-depends.
    local names dep
    names=" $(for m in $mods; do basename "$m" .ko | tr _ -; done | tr '\n' ' ') "
    for m in $mods; do
        for dep in $(modinfo -F depends "$m" | tr ',' ' '); do
            case "$names" in *" ${dep//_/-} "*) ;; *) vm_die "$(basename "$m") needs $dep, not unpacked (see vm_kernel)" ;; esac
        done
    done
    : > "$stage/mt/modules"
    for m in $mods; do
        local rel=${m#"$VM_KROOT"}
        mkdir -p "$stage$(dirname "$rel")"
        cp "$m" "$stage$rel"
        echo "$rel" >> "$stage/mt/modules"
    done

    # mt-agent, stripped (a debug build is mostly DWARF).
    if [ -n "${VM_AGENT:-}" ]; then
        local agent="$stage/usr/local/bin/mt-agent"
        strip -o "$agent" "$VM_AGENT" 2>/dev/null || cp "$VM_AGENT" "$agent"
        for lib in $(ldd "$VM_AGENT" | awk '/=> \//{print $3} /^\t\//{print $1}'); do
            [ -e "$stage$lib" ] && continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done
        ldd "$VM_AGENT" | grep -q 'not found' && vm_die "mt-agent has unresolved libraries: $(ldd "$VM_AGENT" | grep 'not found')"
    fi

    # dmsetup, and systemd-udevd with its rules and helpers.
    _vm_copy_with_libs "$stage" "$(command -v dmsetup)" "$(command -v udevadm)" /lib/systemd/systemd-udevd \
        /lib/udev/scsi_id /lib/udev/ata_id
    mkdir -p "$stage/lib/udev/rules.d" "$stage/etc/udev"
    cp /lib/udev/rules.d/*.rules "$stage/lib/udev/rules.d/"
    cp /etc/udev/udev.conf "$stage/etc/udev/" 2>/dev/null || true
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
    printf 'root:x:0:\ndisk:x:6:\ntape:x:26:\ncdrom:x:24:\ndialout:x:20:\nkvm:x:104:\nvideo:x:44:\ninput:x:105:\nrender:x:106:\nsgx:x:107:\naudio:x:29:\nkmem:x:15:\ntty:x:5:\nfloppy:x:25:\nlp:x:7:\n' > "$stage/etc/group"

    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out" || vm_die "cpio failed"
}

# vm_boot SCENARIO MODE UDEV OUTDIR — boots one VM in the background (pid in VM_PIDS); results in
# OUTDIR/data.log, kernel console in OUTDIR/console.log, qemu's own errors in OUTDIR/qemu.log.
vm_boot() {
    local scen=$1 mode=$2 udev=$3 out=$4 args=()
    mkdir -p "$out/images"
    mapfile -t args < <(python3 "$VM_LIB/vm_scenarios.py" qemu-args "$scen" "$out/images") \
        || vm_die "vm_scenarios.py qemu-args $scen failed"
    [ ${#args[@]} -gt 0 ] || vm_die "no qemu arguments for $scen"
    : > "$out/data.log"; : > "$out/console.log"
    date +%s.%N > "$out/start"
    timeout -k 5 "${MT_VM_TIMEOUT:-300}" qemu-system-x86_64 \
        -machine pc,accel=tcg -cpu max -m 1024 -smp 1 -nodefaults -display none -no-reboot \
        -kernel "$VM_VMLINUZ" -initrd "$VM_WORK/initramfs.cpio" \
        -append "console=ttyS0 quiet loglevel=4 panic=-1 mt.scenario=$scen mt.mode=$mode mt.udev=$udev" \
        -serial "file:$out/console.log" -serial "file:$out/data.log" \
        "${args[@]}" > "$out/qemu.log" 2>&1 &
    VM_PIDS+=($!)
    echo $! > "$out/pid"
}

# vm_wait OUTDIR — waits for that VM; prints its run time.
vm_wait() {
    local out=$1 pid rc=0
    pid=$(cat "$out/pid")
    wait "$pid" || rc=$?
    local keep=() p
    for p in "${VM_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    VM_PIDS=("${keep[@]}")
    echo "$rc" > "$out/rc"
    python3 -c "import time,sys; print('%.1f' % (time.time() - float(open(sys.argv[1]).read())))" "$out/start" > "$out/seconds"
    return 0
}
