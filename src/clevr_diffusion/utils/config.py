"""Dataclass configs that round-trip through JSON with their types intact."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from .io import atomic_write_json

__all__ = ["JsonConfig", "read_json_file"]

T = TypeVar("T", bound="JsonConfig")


_REWRITE_HINT = "the file is damaged or was edited by hand: fix it, or write it again (save_pretrained or save())"


_JSON_KINDS = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"
}


def load_json_text(path: Path, fix: str, error: type[ValueError] = ValueError) -> Any:
    """The JSON value in the file at ``path``; a broken file raises ``error`` naming it.

    Args:
        path: An existing file.
        fix: What the reader should do about a broken file, for the message.
        error: The `ValueError` subclass to raise.

    Raises:
        ValueError: (``error``) If the file is not UTF-8 or not valid JSON; the message gives
            the line and column.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as problem:
        raise error(
            f"{path} is not valid JSON ({problem.msg} at line {problem.lineno}, column {problem.colno}); {fix}"
        ) from problem
    except UnicodeDecodeError as problem:
        raise error(f"{path} is not UTF-8 text ({problem.reason} at byte {problem.start}); {fix}") from problem


def read_json_file(path: str | os.PathLike[str], fix: str = _REWRITE_HINT) -> dict[str, Any]:
    """Read a JSON file that must hold an object, naming the file in every error.

    Args:
        path: The file.
        fix: What the reader should do about a broken file, for the message.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not UTF-8, not valid JSON (the message gives the line and
            column) or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No config file at {path}")
    data = load_json_text(path, fix)
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        raise ValueError(f"{path} must hold a JSON object {{...}}, got {kind}; {fix}")
    return data


def _coerce(value: Any, hint: Any) -> Any:
    """Turn JSON values back into the annotated type (lists into tuples, nested configs)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        for option in options:
            try:
                return _coerce(value, option)
            except (TypeError, ValueError):
                continue
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args:
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        (arg,) = get_args(hint) or (Any,)
        return [_coerce(v, arg) for v in value]
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise ValueError(f"{value!r} is not one of {get_args(hint)}")
        return value
    if isinstance(hint, type) and issubclass(hint, JsonConfig) and isinstance(value, dict):
        return hint.from_dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, JsonConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclasses.dataclass
class JsonConfig:
    """Base class for configuration dataclasses stored as ``config.json``.

    Subclasses are plain dataclasses; this base adds exact JSON round trips: tuples come back
    as tuples, nested configs as their classes, and unknown keys are a clear error.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build the config from a dict, restoring field types.

        Raises:
            ValueError: If ``data`` holds keys that are not fields of this config.
        """
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"_class_name", "_library_version"})
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {unknown}; valid fields are {sorted(names)}. "
                "Was this config written for another class or a newer version of clevr-diffusion?"
            )
        kwargs = {k: _coerce(v, hints[k]) for k, v in data.items() if k in names}
        return cls(**kwargs)

    def to_json(self) -> str:
        """Return the config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        """Parse a config from JSON text."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config to ``path`` atomically (with the class name, for clear errors)."""
        from .. import __version__

        data = {"_class_name": type(self).__name__, "_library_version": __version__}
        data.update(self.to_dict())
        return atomic_write_json(path, data)

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a config written by `save`.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file is not a JSON object (the message names the file and the
                position of a syntax error) or was written for another config class.
        """
        path = Path(path)
        data = read_json_file(path)
        written_for = data.get("_class_name", cls.__name__)
        if written_for != cls.__name__:
            raise ValueError(f"{path} holds a {written_for}, not a {cls.__name__}")
        return cls.from_dict(data)

    def replace(self: T, **changes: Any) -> T:
        """Return a copy with some fields changed (validation runs again)."""
        return dataclasses.replace(self, **changes)
