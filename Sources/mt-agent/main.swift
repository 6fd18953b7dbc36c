import MTAgentCLI

MTAgent.main()
