"""Ready-made tools for asynclm agents.

- `calculator`: safe arithmetic (`ast`-based, bounded).
- `make_http_tools(allow_hosts)`: `http_get` / `http_post` limited to allowlisted hosts.
- `make_file_tools(root)`: `read_file`, `list_dir` (and `write_file`) confined to a directory.
- `now`, `sleep`: the clock.
- `simulated(doc)`: any function description, with a deterministic latency and result (the
  AsyncLM paper's evaluation set-up).

Each is an `asynclm.tooling.Tool` or a factory returning them.
"""

from asynclm.tools.calculator import calculator
from asynclm.tools.clock import now, sleep
from asynclm.tools.files import make_file_tools
from asynclm.tools.http import make_http_tools
from asynclm.tools.simulated import fnv1a_32, simulated, simulated_latency

__all__ = [
    "calculator",
    "fnv1a_32",
    "make_file_tools",
    "make_http_tools",
    "now",
    "simulated",
    "simulated_latency",
    "sleep",
]
