"""asynclm.backends."""
