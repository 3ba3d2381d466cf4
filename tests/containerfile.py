"""A small reader of Containerfile instructions for the deploy tests: continuation lines joined, comments dropped,
instructions grouped by build stage, and `ARG` defaults declared before the first `FROM` resolved in `FROM`."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    argument: str

    def words(self) -> list[str]:
        """The argument as words: the JSON (exec) form when it is one, else shell words."""
        if self.argument.startswith("["):
            return list(json.loads(self.argument))
        return shlex.split(self.argument)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]

    def arg_default(self, name: str) -> str | None:
        for instruction in self.all("ARG"):
            key, _, value = instruction.argument.partition("=")
            if key == name:
                return value or None
        return None

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            for word in instruction.words():
                key, _, value = word.partition("=")
                labels[key] = value
        return labels


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Containerfile, each continuation (`\\` at the end of a line) joined into one."""
    joined: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, argument = whole.partition(" ")
        joined.append(Instruction(keyword.upper(), " ".join(argument.split())))
    assert not pending, "the file ends inside a continuation line"
    return joined


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The global `ARG` defaults (before the first FROM) and the stages, their images with those ARGs resolved."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.argument.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(image, name))
        elif not result:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            key, _, value = instruction.argument.partition("=")
            global_args[key] = value
        else:
            result[-1].instructions.append(instruction)
    return global_args, result
