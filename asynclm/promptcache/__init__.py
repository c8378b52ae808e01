"""asynclm.promptcache."""
