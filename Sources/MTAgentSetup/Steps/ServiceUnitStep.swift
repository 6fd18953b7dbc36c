import MTAgentLinux

/// Installs `mt-agent.service` (Type=notify, running `mt-agent serve`). Installed, not started:
/// the service starts at the next boot once enabled, after the reboot setup asks for.
///
/// The unit text lives here, in the binary; `Packaging/systemd/mt-agent.service` is the same
/// bytes for `/usr/bin/mt-agent` (a test keeps them equal). Where a package installed that
/// file as `packagedPath` and setup runs `/usr/bin/mt-agent`, the step is done as it is.
public struct ServiceUnitStep: SetupStep {
    public let id = "service-unit"
    public let title = "Install the systemd unit mt-agent.service"
    public static let path = "/etc/systemd/system/mt-agent.service"
    /// Where the .deb and .rpm install the unit.
    public static let packagedPath = "/usr/lib/systemd/system/mt-agent.service"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        try context.ownedFileState(
            Self.path, content: Array(Self.unit(executable: context.options.executablePath).utf8),
            installing: "install \(Self.path) (ExecStart=\(context.options.executablePath) serve)", what: " unit",
            packaged: Self.packagedPath)
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        try context.files.write(Self.path, Array(Self.unit(executable: context.options.executablePath).utf8), mode: 0o644)
        if context.systemdRunning { try ServiceEnableStep.systemctl(["daemon-reload"], context) }
        return StepOutcome(summary: "installed \(Self.path) (ExecStart=\(context.options.executablePath) serve)")
    }

    public static func unit(executable: String) -> String {
        """
        # mt-agent: the failback master target service. 'mt-agent setup' installs this file as
        # /etc/systemd/system/mt-agent.service and 'mt-agent setup --revert' removes it; the
        # packages install the same file as /usr/lib/systemd/system/mt-agent.service, and setup
        # then adds no copy of its own.
        #
        # The sandbox below keeps what the service needs: every block device in /dev read-write
        # with O_DIRECT and the block ioctls, the retention volume wherever the config mounts it,
        # /sys, /proc and /run/udev to read, TCP and unix sockets. Settings an older systemd does
        # not know (RHEL 8 has 239) are ignored with a warning. 'systemd-analyze security
        # mt-agent' scores the result.
        [Unit]
        Description=mt-agent failback master target (receives replication, keeps recovery points)
        Documentation=man:mt-agent(1)
        # Senders connect over the network; the retention volume comes from /etc/fstab.
        Wants=network-online.target
        After=network-online.target local-fs.target

        [Service]
        # READY=1 once the listener is bound, STATUS= lines, STOPPING=1 when draining.
        Type=notify
        ExecStart=\(executable) serve
        # SIGHUP: read the configuration again without dropping senders.
        ExecReload=/bin/kill -HUP $MAINPID
        # Created by systemd if missing (setup keeps its state and backups here too); a crash
        # with core_pattern a plain file leaves its core here.
        StateDirectory=mt-agent
        WorkingDirectory=/var/lib/mt-agent
        Restart=on-failure
        RestartSec=5
        # Before READY=1 it may be finishing a failover that was interrupted, which rolls back as
        # much journal as the failover needs; killing it then only makes the next start redo it.
        TimeoutStartSec=infinity
        # Stopping drains connections and makes everything acked durable before exiting.
        TimeoutStopSec=120
        # It pings at half this interval. Longer than the 180 s SCSI command timeout the udev
        # rules give VMware disks, so a storage stall the kernel is riding out never kills it; a
        # hung service is killed with SIGABRT (and dumps core) and restarted.
        WatchdogSec=5min
        LimitNOFILE=65536
        # It holds the replicas' newest writes: let the OOM killer pick another process first.
        OOMScoreAdjust=-500
        # Journal segments and the catalog hold the protected machines' data: owner only.
        UMask=0077

        # --- Sandbox ---
        # Root, but only these capabilities: DAC_OVERRIDE and DAC_READ_SEARCH for a retention
        # directory or lab target file root does not own, NET_BIND_SERVICE for a configured port
        # below 1024, SYS_NICE for libdispatch, which renices its worker threads by QoS (and logs
        # "Failed to set thread priority" at every start without it). Its block ioctls (BLKGETSIZE64,
        # BLKSSZGET, BLKPBSZGET, BLKROGET), O_DIRECT, fdatasync and fallocate need none; add
        # CAP_SYS_ADMIN here if it ever issues BLKFLSBUF or BLKRRPART.
        CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_NET_BIND_SERVICE CAP_SYS_NICE
        # Nothing it runs (sh, dd and rm for the retention write probe) gains privileges.
        NoNewPrivileges=yes
        # /usr, /boot, /efi and /etc read-only: it only reads its config, key and certificate.
        # Not ProtectSystem=strict: the retention volume is wherever retention_path says, so no
        # fixed ReadWritePaths= could name it.
        ProtectSystem=full
        # /home, /root and /run/user read-only: a retention volume mounted there fails the
        # retention check (mounted read-only) and the service refuses to start, saying so.
        ProtectHome=read-only
        PrivateTmp=yes
        # The real /dev: target disks are SCSI, NVMe, virtio, dm-multipath maps or, in labs, loop
        # devices, hot-added while it runs. No DeviceAllow= list (and not ProtectClock=, which
        # implies one): any DeviceAllow= closes every device not listed.
        PrivateDevices=no
        # /sys and /proc/sys read-only (it only reads sysfs), no module loading, no kernel log,
        # cgroups read-only, its own hostname namespace.
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectHostname=yes
        # TCP for senders and metrics, unix for the control socket and sd_notify, netlink for
        # glibc's address lookups and libudev.
        RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
        RestrictNamespaces=yes
        LockPersonality=yes
        # Swift compiles ahead of time: no memory is ever writable and executable.
        MemoryDenyWriteExecute=yes
        RestrictRealtime=yes
        RestrictSUIDSGID=yes
        SystemCallArchitectures=native
        # @system-service holds everything it calls: ioctl, pread/pwrite(v), fdatasync, fsync,
        # fallocate, flock, epoll, sockets, threads (clone3), execve for the write probe. A call
        # outside it fails with EPERM, which the code reports, rather than killing the process in
        # the middle of a write.
        SystemCallFilter=@system-service
        SystemCallErrorNumber=EPERM

        [Install]
        WantedBy=multi-user.target

        """
    }
}
