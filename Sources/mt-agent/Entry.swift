import MTAgentCLI

// The whole program is MTAgentCLI; this only makes its async root command the entry point.
@main
extension MTAgent {}
