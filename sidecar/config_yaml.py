"""Read an admin's YAML config file strictly and say where each problem is.

PyYAML silently keeps the last of two equal keys: a second `hours:` under a market replaces the
first and the admin never learns that half their schedule is gone. This loader refuses duplicate
keys (naming both lines), remembers the line of every key so that later validation can point at
it, and defines the one `Problem` shape every config check reports (file, line, key, message, fix).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    line: int | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        """One line: `file:line: key: message (fix: ...)`, so grep and editors can jump to it."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" + (f" (fix: {self.fix})" if self.fix else "")

    def sort_key(self) -> tuple[str, int, str]:
        return self.file, self.line or 0, self.key


class ConfigError(ValueError):
    """Every problem of one config file at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def key_text(path: KeyPath) -> str:
    """("windows", 0, "window") -> "windows[0].window"; () -> "(top level)"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass
class Lines:
    """The 1-based line of each key path in one file."""

    file: str
    by_path: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: list[Problem] = field(default_factory=list)  # filled when parsed with keep_going

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, else of its nearest enclosing key (a missing key is reported at its parent)."""
        for cut in range(len(path), -1, -1):
            found = self.by_path.get(path[:cut])
            if found is not None:
                return found
        return None

    def line_of_key(self, key: str) -> int | None:
        """Like `line`, for a key already written as text ("reps[3].pto[0]")."""
        by_text = {key_text(path): line for path, line in self.by_path.items()}
        while key:
            if key in by_text:
                return by_text[key]
            key = re.sub(r"(\[\d+\]|\.?[^.\[]+)$", "", key)
        return by_text.get("(top level)")

    def problem(self, path: KeyPath, message: str, fix: str = "") -> Problem:
        return Problem(self.file, key_text(path), self.line(path), message, fix)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "hours"?)' when a known name is close to `word`, else ''."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _scalar_key(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _walk(node: yaml.Node, path: KeyPath, lines: Lines, duplicates: list[Problem]) -> None:
    lines.by_path.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            name = _scalar_key(key_node)
            if name is None or name == "<<":  # complex keys and merge keys: left to the constructor
                continue
            line = key_node.start_mark.line + 1
            child = (*path, name)
            if name in first:
                duplicates.append(Problem(
                    lines.file, key_text(child), line,
                    f"duplicate key: {name!r} is already set on line {first[name]}, and YAML would silently "
                    "keep only the last one", "merge the two entries into one"))
                continue  # keep the first one's lines: it is where the admin will look
            first[name] = line
            lines.by_path[child] = line
            _walk(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, duplicates)


def parse_yaml(text: str, file: str, example: str = "", *, keep_going: bool = False) -> tuple[Any, Lines]:
    """The document's data and key lines; raises ConfigError on bad syntax or duplicate keys.

    With `keep_going`, duplicate keys are left in `lines.duplicates` instead (the data keeps the last
    value, as PyYAML does) so that a validator can report them together with everything else; the
    caller must then refuse the file when that list is not empty."""
    lines = Lines(file)
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            duplicates: list[Problem] = []
            if root is not None:
                _walk(root, (), lines, duplicates)
            if duplicates and not keep_going:
                raise ConfigError(duplicates)
            lines.duplicates = duplicates
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, "(syntax)", mark.line + 1 if mark else None,
                                   f"not valid YAML: {problem}",
                                   "fix the indentation or quoting" + (f" (compare with {example})"
                                                                       if example else ""))]) from exc
    return data, lines


def read_yaml(path: Path, example: str = "", *, keep_going: bool = False) -> tuple[Any, Lines]:
    """Read and parse `path`; an unreadable file is a ConfigError too, naming how to get one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fix = f"copy {example} or run `sidecar init`" if example else "check the path"
        raise ConfigError([Problem(str(path), "(file)", None, f"cannot read: {exc.strerror or exc}",
                                   fix)]) from exc
    return parse_yaml(text, str(path), example, keep_going=keep_going)
