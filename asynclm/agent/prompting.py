"""The agent's system prompt: the CML protocol, the tools' documentation, an example."""

from __future__ import annotations

import json
from collections.abc import Sequence

from asynclm.agent.tool import Tool

PROTOCOL = """You can use tools. To call one, write a call block and keep writing:
[CALL] <id> [HEAD] <tool>(<name>=<value>, ...) [END]
<id> is a short name you choose for the call (w1, w2, ...). Calls run in the background while you
write. Each result arrives later as [INTR] <id> [HEAD] <result> [END]. When you need a result that
has not arrived, write [TRAP][END] to wait for it. Never write [INTR] yourself. Start every
independent call first, the slowest first, then wait. Answer the user in plain text."""

EXAMPLE = """Example:
User: What is 2+3 and 10*4?
Assistant: [CALL] c1 [HEAD] calculator(expression="2+3") [END] \
[CALL] c2 [HEAD] calculator(expression="10*4") [END] [TRAP][END]\
[INTR] c1 [HEAD] 5 [END][INTR] c2 [HEAD] 40 [END] 2+3 is 5 and 10*4 is 40."""


def describe_tool(tool: Tool) -> str:
    """One tool's documentation: signature line, description, JSON schema of the arguments."""
    props = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    args = ", ".join(
        f"{name}: {_type_name(spec)}{'' if name in required else ' = optional'}"
        for name, spec in props.items()
    )
    schema = json.dumps(tool.parameters, separators=(",", ":"), sort_keys=True)
    return f"- {tool.name}({args}): {tool.description}\n  parameters: {schema}"


def _type_name(spec: dict) -> str:
    kind = spec.get("type")
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    return str(kind or "any")


def system_prompt(
    tools: Sequence[Tool], instructions: str | None = None, *, example: bool = True
) -> str:
    """The full system prompt text of an agent."""
    return "".join(text for _, text in system_modules(tools, instructions, example=example))


def system_modules(
    tools: Sequence[Tool], instructions: str | None = None, *, example: bool = True
) -> list[tuple[str, str]]:
    """The system prompt as named parts: instructions + protocol, one per tool, the example.

    Prompt Cache keeps each part's K/V, so agents sharing instructions and leading tools share
    that cached prefix.
    """
    if not tools:
        return [
            (
                "instructions",
                instructions.strip() if instructions else "You are a helpful assistant.",
            )
        ]
    head = [instructions.strip()] if instructions else []
    parts = [("instructions", "\n\n".join([*head, PROTOCOL, "Tools:\n"]))]
    parts += [(f"tool.{i}.{t.name}", describe_tool(t) + "\n") for i, t in enumerate(tools)]
    if example:
        parts.append(("example", "\n" + EXAMPLE))
    return parts
