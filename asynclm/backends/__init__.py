"""Where generation runs, seen through the backend context protocol the agent runtime uses.

- `protocol`: `BackendContext` and friends — the small part of the Context API a run needs.
- `local`: the in-process engine (`LocalContext`): interrupts go into the live KV.
- `scripted`: a scripted model on the real engine, for testing agents without an LLM.
- `forced`: a scripted trace forced onto a real model (local logit mask or server grammar).
"""
