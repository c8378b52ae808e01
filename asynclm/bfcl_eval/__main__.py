"""`python -m asynclm.bfcl_eval`: the multistep_parallel tasks as a table (docs/BFCL.md)."""

from asynclm.bfcl_eval.data import function_classes, load_category
from asynclm.bfcl_eval.multistep import SEED, markdown, plan_multistep

plan = plan_multistep(load_category("multi_turn_base"), function_classes())
print(f"{len(plan)} tasks (seed {SEED})\n")
print(markdown(plan))
