"""asynclm.engine."""
