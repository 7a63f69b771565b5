"""The i-CLEVR label vocabulary: object names <-> multi-hot vectors.

An i-CLEVR object is ``"<colour> <shape>"``: 8 colours x 3 shapes = 24 objects, and an image
holds 1 to 3 of them. A label is a (24,) float32 multi-hot vector whose index order is the
benchmark's ``objects.json``: cubes 0-7, spheres 8-15, cylinders 16-23, each shape in the
colour order gray, red, blue, green, brown, purple, cyan, yellow.

Normalisation policy (what `Vocabulary.normalize` accepts): a name is stripped,
lower-cased and runs of internal whitespace become one space, and the word ``"grey"`` is read
as ``"gray"``. Nothing else is guessed: ``"red cubes"``, ``"cube red"`` or ``"pink cube"`` are
errors, whose messages suggest the closest valid names.

Every problem with a label raises `LabelError`, a `ValueError`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .constants import CONDITION_SETS

__all__ = [
    "COLORS",
    "CONDITION_SETS",
    "MAX_OBJECTS",
    "NUM_OBJECTS",
    "OBJECT_NAMES",
    "SHAPES",
    "LabelError",
    "Vocabulary",
    "decode_labels",
    "encode_batch",
    "encode_labels",
    "load_conditions",
    "validate_label_tensor",
]

COLORS: tuple[str, ...] = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
"""The 8 CLEVR colours, in the order they take within each shape's block of the label vector."""
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
"""The 3 CLEVR shapes, in label-vector order (cubes 0-7, spheres 8-15, cylinders 16-23)."""
OBJECT_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLORS)
"""The 24 object names in ``objects.json`` order: index i is position i of a label vector."""
NUM_OBJECTS = len(OBJECT_NAMES)
"""Length of a label vector (24)."""
MAX_OBJECTS = 3
"""Most objects in one i-CLEVR image."""

# Common colour/shape words that are not in CLEVR, mapped to the CLEVR words a user most
# likely meant. Used only to suggest names in error messages, never to accept input.
_COLOUR_HINTS: dict[str, tuple[str, ...]] = {
    "pink": ("purple", "red"),
    "magenta": ("purple",),
    "violet": ("purple",),
    "orange": ("brown", "yellow", "red"),
    "gold": ("yellow", "brown"),
    "white": ("gray",),
    "black": ("gray",),
    "silver": ("gray",),
    "teal": ("cyan", "green"),
    "turquoise": ("cyan",),
    "navy": ("blue",),
    "lime": ("green", "yellow"),
}
_SHAPE_HINTS: dict[str, tuple[str, ...]] = {
    "ball": ("sphere",),
    "box": ("cube",),
    "block": ("cube",),
    "cuboid": ("cube",),
    "tube": ("cylinder",),
    "can": ("cylinder",),
}
_MAX_SUGGESTIONS = 3
_WHITESPACE = re.compile(r"\s+")
_GREY = re.compile(r"\bgrey\b")


class LabelError(ValueError):
    """A label (object name, name list or label vector) is invalid."""


def _normalize_text(name: str) -> str:
    """Apply the module's normalisation policy to one string (no membership check)."""
    text = _WHITESPACE.sub(" ", name.strip().lower())
    return _GREY.sub("gray", text)


def _quote_list(items: Sequence[str], conjunction: str = "or") -> str:
    """``['a', 'b', 'c']`` -> ``"'a', 'b' or 'c'"`` for messages."""
    quoted = [repr(item) for item in items]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]


class Vocabulary:
    """An ordered set of object names and the multi-hot encoding they define.

    Args:
        names: Object names in label-vector order. They are normalised (see the module
            docstring) and must be unique after normalisation.
        max_objects: Most objects one image may hold (``None``: no limit).

    Raises:
        LabelError: If ``names`` is empty, holds non-strings or duplicates, or
            ``max_objects`` is not a positive integer.
    """

    def __init__(self, names: Sequence[str], max_objects: int | None = MAX_OBJECTS) -> None:
        if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise LabelError(
                f"Vocabulary expects a sequence of object names, got {type(names).__name__} "
                f"{names!r}"
            )
        normalized: list[str] = []
        positions: dict[str, int] = {}
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                raise LabelError(
                    f"vocabulary name {i} is {name!r}; names must be non-empty strings"
                )
            norm = _normalize_text(name)
            if norm in positions:
                raise LabelError(
                    f"vocabulary names {positions[norm]} and {i} are both {norm!r} after "
                    "normalisation; each name must be unique"
                )
            positions[norm] = i
            normalized.append(norm)
        if not normalized:
            raise LabelError("Vocabulary needs at least one object name, got none")
        if max_objects is not None and (
            isinstance(max_objects, bool)
            or not isinstance(max_objects, int)
            or max_objects < 1
        ):
            raise LabelError(f"max_objects must be a positive integer or None, got {max_objects!r}")
        self._names: tuple[str, ...] = tuple(normalized)
        self._index: dict[str, int] = positions
        self._max_objects = max_objects
        # '<colour> <shape>' vocabularies get structured suggestions in error messages.
        parts = [name.split(" ") for name in self._names]
        if all(len(p) == 2 for p in parts):
            self._colours: tuple[str, ...] = tuple(dict.fromkeys(p[0] for p in parts))
            self._shapes: tuple[str, ...] = tuple(dict.fromkeys(p[1] for p in parts))
        else:
            self._colours, self._shapes = (), ()

    @classmethod
    def default(cls) -> Vocabulary:
        """The 24 i-CLEVR objects in ``objects.json`` order, at most 3 per image (cached)."""
        return _default_vocabulary()

    @classmethod
    def from_json(
        cls, path: str | os.PathLike[str], max_objects: int | None = MAX_OBJECTS
    ) -> Vocabulary:
        """Read an ``objects.json``-style file: ``{name: index}`` with indices 0..N-1.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            LabelError: If the file is not such a mapping.
        """
        path = Path(path)
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise LabelError(f"{path} is not valid JSON ({err})") from err
        return cls._from_mapping(mapping, str(path), max_objects)

    @classmethod
    def _from_mapping(cls, mapping: Any, source: str, max_objects: int | None) -> Vocabulary:
        if not isinstance(mapping, dict) or not mapping:
            raise LabelError(
                f"{source} must hold a non-empty JSON object {{name: index}} like objects.json, "
                f"got {type(mapping).__name__}"
            )
        by_index: dict[int, str] = {}
        for name, index in mapping.items():
            if isinstance(index, bool) or not isinstance(index, int):
                raise LabelError(f"{source}: index of {name!r} is {index!r}, not an integer")
            if index in by_index:
                raise LabelError(f"{source}: {by_index[index]!r} and {name!r} share index {index}")
            by_index[index] = name
        if sorted(by_index) != list(range(len(by_index))):
            raise LabelError(
                f"{source}: indices must be 0..{len(by_index) - 1}, each once; "
                f"got {sorted(by_index)}"
            )
        return cls([by_index[i] for i in range(len(by_index))], max_objects=max_objects)

    @property
    def names(self) -> tuple[str, ...]:
        """Object names in label-vector order."""
        return self._names

    @property
    def max_objects(self) -> int | None:
        """Most objects one image may hold, or ``None`` for no limit."""
        return self._max_objects

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalize_text(name) in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._names == other._names and self._max_objects == other._max_objects

    def __hash__(self) -> int:
        return hash((self._names, self._max_objects))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} names, max_objects={self._max_objects})"

    def normalize(self, name: str) -> str:
        """Return the vocabulary's spelling of ``name``.

        Policy: strip, lower-case, collapse runs of internal whitespace to one space and read
        the word ``"grey"`` as ``"gray"``; nothing else is guessed.

        Raises:
            LabelError: If ``name`` is not a string or not a known object (the message
                suggests the closest names).
        """
        return self._check_name(name, None)

    def index(self, name: str) -> int:
        """Position of ``name`` in the label vector, in ``[0, len(self))``."""
        return self._index[self._check_name(name, None)]

    def encode(self, names: Sequence[str]) -> torch.Tensor:
        """Encode one image's object names.

        Args:
            names: 1 to ``max_objects`` distinct object names, e.g. ``["red cube"]``.

        Returns:
            (N,) float32 multi-hot vector, N = ``len(self)`` (24 for i-CLEVR).

        Raises:
            LabelError: On a bare string, a non-string item, an unknown name, a duplicate,
                an empty list or too many objects.
        """
        vector = torch.zeros(len(self), dtype=torch.float32)
        vector[self._indices(names)] = 1.0
        return vector

    def encode_batch(self, batch: Sequence[Sequence[str]]) -> torch.Tensor:
        """Encode a batch of name lists into a (B, N) float32 multi-hot tensor.

        Raises:
            LabelError: As `encode`, with the failing list's position in the message.
        """
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Iterable):
            raise LabelError(
                f"encode_batch expects a list of name lists like [['red cube'], "
                f"['blue sphere', 'gray cylinder']], got {type(batch).__name__} {batch!r}"
            )
        rows = list(batch)
        if rows and all(isinstance(row, str) for row in rows):
            # A flat list of names would otherwise be read one character at a time ("unknown object 'r'").
            one_image = f"{[rows]!r} for one image holding these objects, or " if self._fits(len(rows)) else ""
            raise LabelError(
                f"expected a list of label lists, got a flat list of names {rows!r}; pass "
                f"{one_image}{[[row] for row in rows]!r} for one image each"
            )
        out = torch.zeros(len(rows), len(self), dtype=torch.float32)
        for b, names in enumerate(rows):
            try:
                out[b, self._indices(names)] = 1.0
            except LabelError as err:
                raise LabelError(f"label list {b}: {err}") from None
        return out

    def decode(self, vector: Any, threshold: float = 0.5) -> list[str] | list[list[str]]:
        """Turn multi-hot vectors (or per-object probabilities) back into names.

        Args:
            vector: (N,) or (B, N) tensor, array or nested list; entries ``>= threshold``
                count as present.
            threshold: Presence threshold.

        Returns:
            Names in vocabulary order: a list for a (N,) input, a list of lists for (B, N).
            No count check: a model's output may name zero or many objects.

        Raises:
            LabelError: If the input is not numeric or its last dimension is not N.
        """
        try:
            if isinstance(vector, torch.Tensor):
                values = vector
            else:
                values = torch.as_tensor(np.asarray(vector))
        except (TypeError, ValueError, RuntimeError) as err:
            raise LabelError(
                f"decode expects a numeric ({len(self)},) vector or (B, {len(self)}) batch, "
                f"got {type(vector).__name__}; to turn names into a vector use encode()"
            ) from err
        if values.dtype.is_complex:
            raise LabelError(
                f"decode expects numbers, got dtype {values.dtype}; to turn names into a "
                "vector use encode()"
            )
        if values.ndim not in (1, 2) or values.shape[-1] != len(self):
            raise LabelError(
                f"decode expects a ({len(self)},) vector or a (B, {len(self)}) batch, "
                f"got shape {tuple(values.shape)}"
            )
        present = values.detach().cpu().to(torch.float32) >= threshold
        if present.ndim == 1:
            return [self._names[i] for i in present.nonzero().flatten().tolist()]
        return [[self._names[i] for i in row.nonzero().flatten().tolist()] for row in present]

    # -- validation ---------------------------------------------------------------------

    def _fits(self, count: int) -> bool:
        """Whether one image may hold ``count`` objects."""
        return self._max_objects is None or count <= self._max_objects

    def _indices(self, names: Sequence[str]) -> list[int]:
        """Validate one image's name list and return its label-vector indices."""
        if isinstance(names, (str, bytes)):
            text = names if isinstance(names, str) else names.decode("utf-8", "replace")
            raise LabelError(
                f"expected a list of object names, got the string {names!r}; "
                f"wrap it in a list: {json.dumps([text])}"
            )
        if isinstance(names, (torch.Tensor, np.ndarray)):
            raise LabelError(
                "expected a list of object names, got a "
                f"{type(names).__name__}; to turn a label vector into names use decode()"
            )
        if not isinstance(names, Iterable):
            raise LabelError(
                f"expected a list of object names like ['red cube'], got {type(names).__name__} "
                f"{names!r}"
            )
        items = list(names)
        if not items:
            limit = f" to {self._max_objects}" if self._max_objects is not None else " or more"
            raise LabelError(
                f"empty label list: an image holds 1{limit} objects, e.g. ['red cube']"
            )
        seen: dict[str, int] = {}
        indices: list[int] = []
        for i, item in enumerate(items):
            norm = self._check_name(item, i)
            if norm in seen:
                first = seen[norm]
                spelled = ""
                if items[first] != item:
                    spelled = f" (spelled {items[first]!r} and {item!r})"
                raise LabelError(
                    f"duplicate object {norm!r} at items {first} and {i}{spelled}; each object "
                    "appears at most once per image"
                )
            seen[norm] = i
            indices.append(self._index[norm])
        if self._max_objects is not None and len(items) > self._max_objects:
            raise LabelError(
                f"{len(items)} objects given ({_quote_list(list(seen), 'and')}) but an image "
                f"holds at most {self._max_objects} (max_objects={self._max_objects})"
            )
        return indices

    def _check_name(self, name: Any, position: int | None) -> str:
        where = f" (item {position})" if position is not None else ""
        if not isinstance(name, str):
            raise LabelError(
                f"object name{where} is {type(name).__name__} {name!r}, not a string; "
                "object names are strings like 'red cube'"
            )
        norm = _normalize_text(name)
        if norm in self._index:
            return norm
        message = f"unknown object {name!r}{where}"
        suggestions = self._suggest(norm)
        message += f"; did you mean {_quote_list(suggestions)}?" if suggestions else "."
        if self._colours:
            message += (
                f" An object is '<colour> <shape>' with colour one of {', '.join(self._colours)}"
                f" and shape one of {', '.join(self._shapes)}."
            )
        elif len(self) <= 30:
            message += f". Valid names: {', '.join(self._names)}."
        raise LabelError(message)

    def _suggest(self, norm: str) -> list[str]:
        """Up to three valid names close to the unknown normalised name ``norm``."""
        found = self._suggest_structured(norm) if self._colours else None
        if found is None:
            found = difflib.get_close_matches(norm, self._names, n=_MAX_SUGGESTIONS, cutoff=0.6)
        return [name for name in dict.fromkeys(found) if name in self._index][:_MAX_SUGGESTIONS]

    def _suggest_structured(self, norm: str) -> list[str] | None:
        """Suggestions from the name's colour and shape words; ``None``: no structure found."""
        words = norm.replace("-", " ").replace("_", " ").split()
        colour_words = [w for w in words if w in self._colours]
        shape_words = [self._singular(w) for w in words if self._singular(w) in self._shapes]
        if len(colour_words) == 1 and len(shape_words) == 1:
            # Both parts are valid but the order, plural or extra words are off.
            return [f"{colour_words[0]} {shape_words[0]}"]
        if len(words) == 1:
            word = words[0]
            if word in self._colours:
                return [f"{word} {shape}" for shape in self._shapes]
            if self._singular(word) in self._shapes:
                return []  # any colour would do: the message lists them
            for colour in self._colours:  # 'redcube'
                rest = word[len(colour) :]
                if word.startswith(colour) and self._singular(rest) in self._shapes:
                    return [f"{colour} {self._singular(rest)}"]
            return None
        if len(words) != 2:
            return None
        colours = self._close(words[0], self._colours, _COLOUR_HINTS)
        shapes = self._close(self._singular(words[1]), self._shapes, _SHAPE_HINTS)
        return [f"{c} {s}" for c in colours for s in shapes]

    def _singular(self, word: str) -> str:
        if word not in self._shapes and word.endswith("s") and word[:-1] in self._shapes:
            return word[:-1]
        return word

    @staticmethod
    def _close(word: str, valid: tuple[str, ...], hints: dict[str, tuple[str, ...]]) -> list[str]:
        if word in valid:
            return [word]
        close = [w for w in hints.get(word, ()) if w in valid]
        close += difflib.get_close_matches(word, valid, n=_MAX_SUGGESTIONS, cutoff=0.6)
        return list(dict.fromkeys(close))[:_MAX_SUGGESTIONS]


def _resource_text(filename: str) -> str:
    resource = importlib.resources.files("clevr_diffusion") / "resources" / "iclevr" / filename
    return resource.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _default_vocabulary() -> Vocabulary:
    mapping = json.loads(_resource_text("objects.json"))
    return Vocabulary._from_mapping(mapping, "bundled objects.json", MAX_OBJECTS)


def validate_label_tensor(
    labels: torch.Tensor,
    num_labels: int | None = NUM_OBJECTS,
    max_objects: int | None = MAX_OBJECTS,
    *,
    allow_unconditional: bool = False,
) -> None:
    """Check that ``labels`` is a (B, N) multi-hot tensor, as `encode_batch` makes.

    Every entry must be 0 or 1 (NaN is neither) and each row must hold 1 to ``max_objects``
    ones. The check is one pass over the whole tensor with one host sync; only a failing
    tensor is searched for the row to name.

    Args:
        labels: The label tensor.
        num_labels: N, the required row length (``None``: any).
        max_objects: Most ones per row (``None``: no limit); `Vocabulary.max_objects`.
        allow_unconditional: Also accept all-zero rows, the "no label" input of
            classifier-free guidance (an unconditional image).

    Raises:
        LabelError: Naming the shape, or the first bad row and what is wrong with it.
    """
    width = "N" if num_labels is None else num_labels
    if labels.ndim != 2 or (num_labels is not None and labels.shape[1] != num_labels):
        raise LabelError(f"label tensor must be (B, {width}), got {tuple(labels.shape)}")
    if labels.dtype.is_complex:
        raise LabelError(f"label tensor must be real 0/1 values, got dtype {labels.dtype}")
    binary = (labels == 0) | (labels == 1)
    counts = (labels != 0).sum(dim=1)
    low = 0 if allow_unconditional else 1
    bad_rows = ~binary.all(dim=1) | (counts < low)
    if max_objects is not None:
        bad_rows |= counts > max_objects
    if not bool(bad_rows.any()):
        return
    row = int(bad_rows.nonzero()[0, 0])
    values = labels[row]
    if bool(values.isnan().any()):
        problem = "holds NaN"
    elif not bool(binary[row].all()):
        odd = values[~binary[row]][0].item()
        problem = f"holds {odd!r} (entries must be 0 or 1)"
    elif int(counts[row]) == 0:
        problem = "is all zeros (no object)"
    else:
        problem = f"has {int(counts[row])} objects, more than the {max_objects} an image holds"
    ones = "at least one 1" if max_objects is None else f"1 to {max_objects} ones"
    if allow_unconditional:
        ones += " (or all zeros, an unconditional image)"
    raise LabelError(
        f"label row {row} {problem}; each row must be 0/1 with {ones}: encode label lists "
        "with clevr_diffusion.encode_batch"
    )


def encode_labels(names: Sequence[str]) -> torch.Tensor:
    """Encode one image's names with the default vocabulary: (24,) float32 multi-hot."""
    return Vocabulary.default().encode(names)


def encode_batch(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Encode name lists with the default vocabulary: (B, 24) float32 multi-hot."""
    return Vocabulary.default().encode_batch(batch)


def decode_labels(vector: Any, threshold: float = 0.5) -> list[str] | list[list[str]]:
    """Decode a (24,) or (B, 24) label tensor/array with the default vocabulary."""
    return Vocabulary.default().decode(vector, threshold=threshold)


def load_conditions(name: str | os.PathLike[str]) -> list[list[str]]:
    """Load an evaluation condition set as lists of canonical object names.

    Args:
        name: ``"test"`` or ``"new_test"`` (``".json"`` suffix optional) for the bundled
            benchmark files (these names win over a same-named file in the working folder:
            write ``"./test.json"`` for that), or a path to a JSON file holding a list of
            label lists.

    Returns:
        One name list per condition, in file order (32 for each bundled set).

    Raises:
        LabelError: If ``name`` is neither a bundled set nor an existing file, or the file's
            content is not a list of valid label lists.
    """
    key = os.fspath(name)
    stem = key[: -len(".json")] if key.endswith(".json") else key
    if stem in CONDITION_SETS:
        data, source = json.loads(_resource_text(f"{stem}.json")), f"bundled {stem}.json"
    elif Path(key).is_file():
        source = key
        try:
            data = json.loads(Path(key).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise LabelError(f"{key} is not valid JSON ({err})") from err
    else:
        looks_like_path = os.sep in key or "/" in key
        # A path-like name is a missing file, not a misspelt set name: no suggestion.
        close = [] if looks_like_path else difflib.get_close_matches(stem, CONDITION_SETS, 1, 0.5)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise LabelError(
            f"unknown condition set {key!r}: not a bundled set and no such file{hint} "
            f"Bundled sets: {', '.join(map(repr, CONDITION_SETS))}; or pass a path to a JSON "
            "file holding a list of label lists"
        )
    if not isinstance(data, list):
        raise LabelError(
            f"{source} must hold a JSON list of label lists like [[\"red cube\"], ...], "
            f"got {type(data).__name__}"
        )
    vocabulary = Vocabulary.default()
    conditions: list[list[str]] = []
    for i, names in enumerate(data):
        try:
            vocabulary._indices(names)
        except LabelError as err:
            raise LabelError(f"{source}, condition {i}: {err}") from None
        conditions.append([vocabulary.normalize(n) for n in names])
    return conditions
