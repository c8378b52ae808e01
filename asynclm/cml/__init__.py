"""asynclm.cml."""
