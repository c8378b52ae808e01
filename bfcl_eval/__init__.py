"""BFCL harness: latency and accuracy of the sync, sync-parallel and async modes."""
