"""Ready-made tools for asynclm agents: HTTP, calculator, files, clock, simulated."""
