"""asynclm.inferlet: programs that drive the engine through the Context API.

An inferlet is a Python file (or module) defining `async def main(runtime, **args)`. Each run
gets a scope of its own: its contexts, an export namespace of its own, and quotas on KV pages,
processed tokens, open contexts and wall time. By default it runs out of process
(`isolation="process"`): a sandboxed child forked from a zygote (`zygote`, `spawner`), with
resource limits (`sandbox`), talking to the engine over a socket (`protocol`, `channel` and
`client` on its side, `host` on the engine's); no engine object ever reaches it. In process
(`local`) is for trusted code and tests.
"""

from __future__ import annotations

from asynclm.engine.scope import Namespace, Quota, QuotaExceededError
from asynclm.inferlet.errors import InferletError, InferletKilledError
from asynclm.inferlet.loading import InferletMain, load_inferlet, parse_cli_args
from asynclm.inferlet.local import LocalRuntime
from asynclm.inferlet.run import InferletResult, Isolation, run_inferlet, run_many
from asynclm.inferlet.sandbox import Sandbox, SandboxError

Runtime = LocalRuntime  # the handle's API (out of process: `client.RemoteRuntime`, the same)

__all__ = [
    "InferletError",
    "InferletKilledError",
    "InferletMain",
    "InferletResult",
    "Isolation",
    "LocalRuntime",
    "Namespace",
    "Quota",
    "QuotaExceededError",
    "Runtime",
    "Sandbox",
    "SandboxError",
    "load_inferlet",
    "parse_cli_args",
    "run_inferlet",
    "run_many",
]
