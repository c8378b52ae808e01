"""Runs BFCL's official AST checker on cases read from stdin; used by `agreement`.

Run as `python -I official_worker.py ROOT`, where ROOT holds the official `bfcl_eval` package (a
site-packages folder or the wheel file itself). `-I` keeps the working folder and this file's
folder off `sys.path`, so `bfcl_eval` is BFCL's package, never asynclm's folder of that name.
This file imports nothing from asynclm.

One import is stubbed: `bfcl_eval.constants.model_config` imports every model handler of BFCL
and their API clients; the AST checker only reads `MODEL_CONFIG_MAPPING[model].underscore_to_dot`
from it (False: the model writes dotted function names as documented, like BFCL's prompting
models).

stdin: a pickled list of `(functions, calls, possible_answer, category)`; stdout: a pickled list
of `(valid, error_type)`, with `valid` None when the checker raised (error_type names the error).
"""

import pickle
import sys
import types
from pathlib import Path

MODEL = "asynclm"


def load_checker(root: str):
    sys.path.insert(0, root)
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    mapping = {MODEL: types.SimpleNamespace(underscore_to_dot=False)}
    setattr(stub, "MODEL_CONFIG_MAPPING", mapping)  # noqa: B010 (a module attribute)
    sys.modules[stub.__name__] = stub
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval import ast_checker

    where = Path(ast_checker.__file__).resolve()
    if not str(where).startswith(str(Path(root).resolve())):
        raise SystemExit(f"imported the wrong bfcl_eval: {where} is not under {root}")
    return ast_checker.ast_checker, Language.PYTHON


def main() -> None:
    check, python = load_checker(sys.argv[1])
    results: list[tuple[bool | None, str]] = []
    for functions, calls, answer, category in pickle.load(sys.stdin.buffer):
        try:
            verdict = check(functions, calls, answer, python, category, MODEL)
            results.append((bool(verdict["valid"]), verdict.get("error_type", "")))
        except Exception as e:  # a crash of the official checker is reported, not raised
            results.append((None, f"{type(e).__name__}: {e}"))
    pickle.dump(results, sys.stdout.buffer)


if __name__ == "__main__":
    main()
