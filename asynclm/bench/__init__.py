"""asynclm.bench."""
