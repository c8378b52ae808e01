"""LoRA fine-tuning that teaches a model the CML protocol (`asynclm finetune`).

The layers, bottom up (the first six are pure: no torch, tested in milliseconds):

- `task.py`: a task's call graph, results and answer — what must happen, not when.
- `family.py`, `catalog.py`, `pools.py`, `bank.py`: the template bank of synthetic tool
  tasks (training families, held-out families for evaluation).
- `bfcl_live.py`: tasks from BFCL's live_* categories; `leakage.py`: the check that no
  evaluation data reaches training.
- `simulate.py`: the AsyncLM simulation — what the model writes and where results land, per
  calling mode.
- `metrics.py`: scoring an agent run against its task.
- `render.py`: a simulated turn as token ids with a loss mask, through the agent's own prompt
  renderer; `packing.py`: prefix-tree packing of sequences that share a beginning.
- `dataset.py`: the training set (`datasets`) and its statistics.
- `train.py`: PEFT LoRA with the CML token rows trainable, on transformers' Trainer.
- `evaluate.py`: held-out tasks through the real engine and `Agent`.
- `pipeline.py`: the whole run, its presets and outputs.
"""
