/// Checks that the distribution and kernel are ones mt-agent supports. It changes nothing: on an
/// unsupported OS it reports why and setup goes on, since most of what setup does still applies.
public struct OSSupportStep: SetupStep {
    public let id = "os"
    public let title = "Check the OS and kernel (\(OSSupport.supportedList))"

    public init() {}

    public func check(_ context: SetupContext) throws -> StepState {
        let support = OSSupport.read(from: context.system)
        if let problem = support.problem {
            context.logger.warning("unsupported OS", metadata: ["os": "\(support.summary)"])
            return .notApplicable("\(problem) (\(support.summary)); setup continues, but this machine is untested")
        }
        context.logger.debug("supported OS", metadata: ["os": "\(support.summary)"])
        return .done
    }

    public func apply(_ context: SetupContext) throws -> StepOutcome {
        // check never says .needed; there is nothing to change.
        StepOutcome(summary: OSSupport.read(from: context.system).summary)
    }
}
