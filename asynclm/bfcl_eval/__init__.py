"""BFCL harness: accuracy and latency of the sync, sync-parallel and async modes on BFCL v4.

- `entry`: one BFCL entry (the type the others share);
- `data`: BFCL's entries, read from the installed `bfcl-eval` files (never imported);
- `multistep`: the multistep_parallel category, built from multi_turn_base entries (pure);
- `rules`, `checker`: BFCL's AST checker (pure); `agreement`, `perturb`: its comparison with
  the official checker on perturbed answers;
- `tasks`, `oracle`, `decode`, `runner`: entries as agent tasks on simulated tools, the scripted
  oracle, CML calls as checker input, running a task in a mode;
- `report`, `plot`: the summary, tables and figure of `asynclm bench bfcl`.

See docs/BFCL.md.
"""
