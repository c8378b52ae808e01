"""asynclm.engine: the inference core.

Pure bookkeeping (no torch): `pages` (refcounted KV pages, page tables), `sequence` (a context's
tokens and slots), `scope` (namespaces and quotas), `policy` (what the scheduler runs next),
`chat` (the chat format). Tensors: `kv_cache` (the pool), `model` (the decoder), `attention`
(how a batch attends to the pool), `batch_layout` and `runner` (a scheduled batch as tensors,
run on the `forward_thread`), `kernels` (native and torch kernels), `weights` (the weight
formats allowed) and `tuning` (the kernels chosen by measurement at load, cached per machine;
`cpu` names the machine, `paths` the cache), `loader` (models and adapters; `adapters` keeps a
LoRA adapter unmerged beside exact block weights). Orchestration: `scheduler` (one leader batches
every context's `request`), `exports` (named K/V), `generation` and `context` (the Context
API), `engine` (all of it around one model). Inferlets, programs that drive the Context API in
scopes of their own, are the layer above: `asynclm.inferlet`.
"""
