"""The errors a config file can earn, each pointing at the file and line a technician must edit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config, rendered as `FILE:LINE: key.path: message`."""

    file: Path
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is not usable; `problems` lists every reason at once, ordered by line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = sorted(
            problems, key=lambda p: p.line if p.line is not None else 0
        )
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class ConfigFileError(ConfigError):
    """The config file itself (or a secret file read later) could not be read at all."""

    def __init__(self, file: Path, message: str, key_path: str = "") -> None:
        super().__init__([ConfigProblem(file, None, key_path, message)])
