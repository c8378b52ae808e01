"""asynclm.agent."""
