"""Subcommands of the `asynclm` command line (one module each)."""
