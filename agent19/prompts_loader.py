"""MCP prompts as Markdown files with a small front matter (``prompts/*.md``).

    ---
    name: database-engineer
    title: Database engineer
    description: One line an MCP client shows in its prompt picker.
    arguments: task, database        (optional; each becomes an optional string argument)
    ---
    The body. {{task}} is replaced by the argument's value (or left out when not given).

The front matter is ``key: value`` lines only, parsed here rather than with a YAML library: the
format needs nothing more, and a dependency for it would be weight without use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from agent19.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class PromptFile:
    name: str
    title: str
    description: str
    arguments: tuple[str, ...]
    body: str

    def render(self, values: dict[str, str | None]) -> str:
        text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or "", self.body)
        return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def parse_prompt(text: str, source: str) -> PromptFile:
    if not text.startswith("---\n"):
        raise ConfigError(f"prompt {source}: missing front matter", "start the file with a '---' block")
    try:
        head, body = text[4:].split("\n---\n", 1)
    except ValueError:
        raise ConfigError(f"prompt {source}: front matter is not closed", "end it with a '---' line") from None
    meta: dict[str, str] = {}
    for line in head.splitlines():
        if line.strip():
            key, sep, value = line.partition(":")
            if not sep:
                raise ConfigError(f"prompt {source}: front matter line {line!r} is not 'key: value'")
            meta[key.strip()] = value.strip()
    if "name" not in meta or "description" not in meta:
        raise ConfigError(f"prompt {source}: front matter needs 'name' and 'description'")
    args = tuple(a.strip() for a in meta.get("arguments", "").split(",") if a.strip())
    return PromptFile(
        name=meta["name"],
        title=meta.get("title", meta["name"]),
        description=meta["description"],
        arguments=args,
        body=body,
    )


def load_prompts() -> list[PromptFile]:
    """Every prompt shipped with agent19, sorted by name."""
    folder = resources.files("agent19.prompts")
    return sorted(
        (parse_prompt(f.read_text(encoding="utf-8"), f.name) for f in folder.iterdir() if f.name.endswith(".md")
         and f.name != "README.md"),
        key=lambda p: p.name,
    )
