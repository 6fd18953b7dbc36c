/// The steps of `mt-agent setup`, in the order they run. Order matters: the OS and packages are
/// checked before anything is changed; the initramfs is rebuilt after the configs it carries;
/// the identity and the retention volume exist before the unit that serves with them; the unit
/// is installed before it is enabled.
public enum SetupPlan {
    public static func steps(options: SetupOptions, kdf: KDFParameters = .standard) -> [SetupStep] {
        [OSSupportStep(), RequiredToolsStep()]
            + systemFileSteps
            + [ConfigFileStep(), TLSIdentityStep(), PassphraseStep(parameters: kdf), RetentionVolumeStep()]
            + serviceSteps
    }

    /// The steps whose results are the same on every run (no keys, no random salts): what the
    /// golden-file and interruption tests compare byte for byte.
    public static func systemSteps(options: SetupOptions) -> [SetupStep] {
        systemFileSteps + serviceSteps
    }

    static var systemFileSteps: [SetupStep] {
        [MultipathStep(), LVMFilterStep(), MdadmStep(), InitramfsStep(), UdevRulesStep(), CoreDumpStep()]
    }

    static var serviceSteps: [SetupStep] { [ServiceUnitStep(), ServiceEnableStep()] }
}
