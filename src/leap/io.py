"""Atomic file writes and validated JSONL reading.

Every stage writes through these helpers, so an interrupted stage never leaves a
half-written output behind, and a corrupt input names the file, line and field.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class RecordError(ValueError):
    """A record file is malformed: the message names the file, line and field."""


def _format_validation(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<record>"
        parts.append(f"field '{loc}': {e['msg']}")
    return "; ".join(parts)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only on success.

    Works for files and directories (a directory replaces the old one whole).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    inner = tmp / target.name
    try:
        yield inner
        if not inner.exists():
            raise FileNotFoundError(f"atomic write produced nothing at {inner}")
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            inner.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write records as JSONL atomically; returns the number written."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            line = rec.model_dump_json() if isinstance(rec, BaseModel) else json.dumps(rec, sort_keys=True)
            fh.write(line + "\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike[str], model: type[M]) -> Iterator[M]:
    """Yield validated records; a bad line raises RecordError naming file, line and field."""
    p = Path(path)
    if not p.exists():
        raise RecordError(f"{p}: file not found (did the stage that writes it run?)")
    # Bytes, decoded line by line: a torn multi-byte character (a killed writer) is a bad line too.
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"{p}:{lineno}: invalid UTF-8 at byte {e.start + 1} of the line") from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                # json's messages may end in "at" ("Invalid control character at"): say where once.
                msg = e.msg.removesuffix(" at")
                raise RecordError(f"{p}:{lineno}: invalid JSON at column {e.colno}: {msg}") from None
            try:
                yield model.model_validate(data)
            except ValidationError as e:
                raise RecordError(
                    f"{p}:{lineno}: invalid {model.__name__}: {_format_validation(e)}"
                ) from None


def read_jsonl(path: str | os.PathLike[str], model: type[M]) -> list[M]:
    return list(iter_jsonl(path, model))


class JsonlAppender:
    """Append-only JSONL journal for resumable stages.

    Each finished item is flushed and fsynced, so a killed stage keeps the items it
    completed; the stage's real output is still written atomically at the end.
    """

    def __init__(self, path: str | os.PathLike[str], model: type[M]) -> None:
        self.path = Path(path)
        self.model = model
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> list[Any]:
        if not self.path.exists():
            return []
        out = []
        torn = False
        with self.path.open("rb") as fh:  # bytes: a torn UTF-8 character is a torn line too
            for line in fh:
                try:
                    out.append(self.model.model_validate_json(line))
                except (ValidationError, ValueError):
                    torn = True  # a torn last line from a kill: drop it and what follows
                    break
        if torn:
            write_jsonl(self.path, out)
        return out

    def append(self, rec: BaseModel) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(rec.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
