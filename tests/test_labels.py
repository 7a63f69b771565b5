"""Tests for the label vocabulary (clevr_diffusion.labels)."""

from __future__ import annotations

import importlib.resources
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clevr_diffusion.labels import (
    COLORS,
    CONDITION_SETS,
    MAX_OBJECTS,
    NUM_OBJECTS,
    OBJECT_NAMES,
    SHAPES,
    LabelError,
    Vocabulary,
    decode_labels,
    encode_batch,
    encode_labels,
    load_conditions,
    validate_label_tensor,
)

SHARED = Path(__file__).parents[1] / ".." / "shared" / "reference" / "iclevr"


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"shared reference file {path} not available")
    return path


def _bundled(name: str) -> bytes:
    bundled = importlib.resources.files("clevr_diffusion") / "resources" / "iclevr"
    return (bundled / name).read_bytes()


# -- constants and bundled files ---------------------------------------------------------


def test_constants() -> None:
    assert NUM_OBJECTS == 24 and MAX_OBJECTS == 3
    assert COLORS == ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
    assert SHAPES == ("cube", "sphere", "cylinder")
    assert OBJECT_NAMES[:3] == ("gray cube", "red cube", "blue cube")
    assert OBJECT_NAMES[8] == "gray sphere" and OBJECT_NAMES[23] == "yellow cylinder"
    assert CONDITION_SETS == ("test", "new_test")


def test_default_order_matches_shared_objects_json() -> None:
    mapping = json.loads(_shared("objects.json").read_text())
    expected = tuple(sorted(mapping, key=mapping.__getitem__))
    assert Vocabulary.default().names == expected == OBJECT_NAMES
    assert all(Vocabulary.default().index(name) == i for name, i in mapping.items())


@pytest.mark.parametrize("name", ["objects.json", "test.json", "new_test.json"])
def test_bundled_files_equal_shared(name: str) -> None:
    assert _bundled(name) == _shared(name).read_bytes()


def test_default_is_cached_and_equal_to_from_json(tmp_path: Path) -> None:
    assert Vocabulary.default() is Vocabulary.default()
    path = tmp_path / "objects.json"
    path.write_bytes(_bundled("objects.json"))
    assert Vocabulary.from_json(path) == Vocabulary.default()
    assert Vocabulary.from_json(path, max_objects=None) != Vocabulary.default()


def test_from_json_uses_indices_not_file_order(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    path.write_text(json.dumps({"b thing": 1, "a thing": 0}))
    assert Vocabulary.from_json(path).names == ("a thing", "b thing")
    path.write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(LabelError, match="indices"):
        Vocabulary.from_json(path)


# -- encoding and decoding ---------------------------------------------------------------


def test_encode_shape_dtype_and_positions() -> None:
    vector = encode_labels(["red sphere", "cyan cylinder", "cyan cube"])
    assert vector.shape == (24,) and vector.dtype == torch.float32
    assert vector.nonzero().flatten().tolist() == [6, 9, 22]
    assert vector.sum() == 3


def test_encode_batch_shape() -> None:
    batch = encode_batch([["gray cube"], ["yellow cylinder", "blue sphere"], ("red cube",)])
    assert batch.shape == (3, 24) and batch.dtype == torch.float32
    assert batch[0, 0] == 1 and batch[1, 23] == 1 and batch[1, 10] == 1 and batch[2, 1] == 1
    assert batch.sum().item() == 4
    assert encode_batch([]).shape == (0, 24)


def test_decode_batch_and_numpy_and_threshold() -> None:
    batch = np.zeros((2, 24), dtype=np.float32)
    batch[0, [23, 0]] = 0.9
    batch[1, 5] = 0.6
    batch[1, 6] = 0.4
    assert decode_labels(batch) == [["gray cube", "yellow cylinder"], ["purple cube"]]
    assert decode_labels(torch.from_numpy(batch[1])) == ["purple cube"]
    assert Vocabulary.default().decode(batch[1], threshold=0.3) == ["purple cube", "cyan cube"]


_SPACES = st.sampled_from(["", " ", "  ", "\t", "\n "])
_GAPS = st.sampled_from([" ", "  ", "\t", " \n "])


@st.composite
def _messy_name_lists(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Distinct valid names in random order, spelled with random case and whitespace."""
    names = draw(st.lists(st.sampled_from(OBJECT_NAMES), min_size=1, max_size=3, unique=True))
    messy = []
    for name in names:
        colour, shape = name.split(" ")
        if colour == "gray" and draw(st.booleans()):
            colour = "grey"
        text = f"{draw(_SPACES)}{colour}{draw(_GAPS)}{shape}{draw(_SPACES)}"
        upper = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
        messy.append("".join(c.upper() if up else c for c, up in zip(text, upper, strict=True)))
    return names, messy


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(_messy_name_lists())
def test_round_trip_property(case: tuple[list[str], list[str]]) -> None:
    names, messy = case
    vector = encode_labels(messy)
    assert vector.sum().item() == len(names)
    assert set(vector.unique().tolist()) <= {0.0, 1.0}
    # decode returns vocabulary order, whatever the input order was.
    assert decode_labels(vector) == sorted(names, key=OBJECT_NAMES.index)
    assert torch.equal(encode_labels(decode_labels(vector)), vector)


def test_normalize_policy() -> None:
    vocab = Vocabulary.default()
    assert vocab.normalize("  Grey\t  SPHERE ") == "gray sphere"
    assert "RED   cube" in vocab and "grey cube" in vocab
    assert "red cubes" not in vocab and 3 not in vocab
    with pytest.raises(LabelError):
        vocab.normalize("redcube")  # no guessing beyond the documented policy


def test_custom_vocabulary_and_pickle() -> None:
    vocab = Vocabulary(["Apple", "pear", "fig"], max_objects=None)
    assert vocab.names == ("apple", "pear", "fig") and len(vocab) == 3
    assert vocab.encode(["fig", "apple", "pear"]).tolist() == [1.0, 1.0, 1.0]
    assert pickle.loads(pickle.dumps(vocab)) == vocab
    with pytest.raises(LabelError, match="unknown object 'plum'.*apple, pear, fig"):
        vocab.encode(["plum"])


# -- errors ------------------------------------------------------------------------------


def test_bare_string_suggests_list() -> None:
    with pytest.raises(LabelError, match=r'the string .red cube.*\["red cube"\]'):
        encode_labels("red cube")


def test_unknown_name_suggests_same_shape_close_colours() -> None:
    with pytest.raises(LabelError) as info:
        encode_labels(["red cube", "pink cube"])
    message = str(info.value)
    assert "'pink cube' (item 1)" in message
    assert "'purple cube'" in message
    suggested = message.split("did you mean")[1].split("?")[0]
    assert "sphere" not in suggested and "cylinder" not in suggested


@pytest.mark.parametrize(
    ("bad", "suggestion"),
    [
        ("red cub", "red cube"),
        ("cube red", "red cube"),
        ("red cubes", "red cube"),
        ("bleu sphere", "blue sphere"),
        ("redcube", "red cube"),
        ("orange ball", "brown sphere"),
    ],
)
def test_unknown_name_suggestions(bad: str, suggestion: str) -> None:
    pattern = f"unknown object '{bad}' \\(item 0\\); did you mean .*'{suggestion}'"
    with pytest.raises(LabelError, match=pattern):
        encode_labels([bad])


def test_no_close_match_explains_the_format() -> None:
    with pytest.raises(LabelError) as info:
        encode_labels(["xyzzy"])
    message = str(info.value)
    assert "'xyzzy'" in message and "did you mean" not in message
    assert "'<colour> <shape>'" in message
    assert all(word in message for word in COLORS + SHAPES)


def test_non_string_item() -> None:
    with pytest.raises(LabelError, match=r"item 1\) is int 7, not a string"):
        encode_labels(["red cube", 7])


def test_duplicates_name_both_positions() -> None:
    pattern = r"duplicate object 'red cube' at items 0 and 2 \(spelled 'Red Cube' and 'red  cube'\)"
    with pytest.raises(LabelError, match=pattern):
        encode_labels(["Red Cube", "blue cube", "red  cube"])


def test_empty_and_too_many() -> None:
    with pytest.raises(LabelError, match="empty label list"):
        encode_labels([])
    with pytest.raises(LabelError, match="4 objects given.*at most 3"):
        encode_labels(["red cube", "blue cube", "gray cube", "cyan cube"])
    assert Vocabulary(OBJECT_NAMES, max_objects=None).encode(list(OBJECT_NAMES)).sum() == 24


def test_encode_batch_error_names_the_list() -> None:
    pattern = r"label list 1: unknown object 'gren sphere'.*'green sphere'"
    with pytest.raises(LabelError, match=pattern):
        encode_batch([["red cube"], ["gren sphere"]])
    with pytest.raises(LabelError, match="list of name lists"):
        encode_batch("red cube")


def test_encode_batch_rejects_a_flat_list_of_names_with_both_readings() -> None:
    both = (
        "[['red cube', 'blue cube']] for one image holding these objects, or [['red cube'], ['blue cube']] "
        "for one image each"
    )
    with pytest.raises(LabelError, match=re.escape(f"got a flat list of names ['red cube', 'blue cube']; pass {both}")):
        encode_batch(["red cube", "blue cube"])  # type: ignore[list-item]
    four = ["red cube", "blue cube", "gray cube", "cyan cube"]
    each = r"pass \[\['red cube'\], \['blue cube'\], .*\]\] for one image each"
    with pytest.raises(LabelError, match=each) as caught:
        encode_batch(four)  # type: ignore[list-item]
    assert "holding these objects" not in str(caught.value)  # four cannot share one image


def test_validate_label_tensor_accepts_multi_hot_and_names_the_bad_row() -> None:
    good = encode_batch([["red cube"], ["blue sphere", "gray cylinder", "cyan cube"]])
    validate_label_tensor(good)
    validate_label_tensor(good.bool())
    validate_label_tensor(good.long())
    with pytest.raises(LabelError, match="label row 1 is all zeros"):
        validate_label_tensor(torch.cat([good, torch.zeros(2, 24)]).index_select(0, torch.tensor([0, 2])))
    validate_label_tensor(torch.zeros(2, 24), allow_unconditional=True)
    with pytest.raises(LabelError, match=r"label row 0 holds NaN; each row must be 0/1 with 1 to 3 ones"):
        validate_label_tensor(torch.full((1, 24), float("nan")))
    infinite = good.clone()
    infinite[1, 7] = float("inf")
    with pytest.raises(LabelError, match=r"label row 1 holds inf"):
        validate_label_tensor(infinite)
    with pytest.raises(LabelError, match=r"must be \(B, 24\), got \(2, 23\)"):
        validate_label_tensor(good[:, :23])
    many = torch.ones(1, 24)
    with pytest.raises(LabelError, match=f"has 24 objects, more than the {MAX_OBJECTS} an image holds"):
        validate_label_tensor(many)
    validate_label_tensor(many, max_objects=None)
    validate_label_tensor(many, max_objects=Vocabulary(OBJECT_NAMES, max_objects=None).max_objects)


def test_encode_rejects_vectors() -> None:
    with pytest.raises(LabelError, match="use decode"):
        encode_labels(torch.zeros(24))


@pytest.mark.parametrize("shape", [(23,), (2, 25), (2, 3, 24), ()])
def test_decode_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(LabelError, match=r"\(24,\) vector or a \(B, 24\) batch"):
        decode_labels(torch.zeros(shape))


def test_decode_rejects_names() -> None:
    with pytest.raises(LabelError, match="use encode"):
        decode_labels(["red cube"])


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        encode_labels(["nope"])


def test_vocabulary_construction_errors() -> None:
    with pytest.raises(LabelError, match="names 0 and 1 are both 'a b'"):
        Vocabulary(["a b", "A  B"])
    with pytest.raises(LabelError, match="max_objects"):
        Vocabulary(["a"], max_objects=0)
    with pytest.raises(LabelError, match="sequence of object names"):
        Vocabulary("red cube")


# -- condition sets ----------------------------------------------------------------------


def test_load_bundled_conditions() -> None:
    test = load_conditions("test")
    assert len(test) == 32
    assert [sum(len(c) == k for c in test) for k in (1, 2, 3)] == [6, 12, 14]
    assert test[25] == ["red sphere", "cyan cylinder", "cyan cube"]
    new_test = load_conditions("new_test.json")
    assert len(new_test) == 32
    assert [sum(len(c) == k for c in new_test) for k in (1, 2, 3)] == [0, 12, 20]
    assert test == json.loads(_bundled("test.json"))


def test_load_conditions_from_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([["Grey Cube"], ["red sphere", "blue cylinder"]]))
    assert load_conditions(path) == [["gray cube"], ["red sphere", "blue cylinder"]]
    path.write_text(json.dumps([["red cube"], ["pink cube"]]))
    with pytest.raises(LabelError, match=r"mine.json, condition 1: unknown object 'pink cube'"):
        load_conditions(str(path))
    path.write_text(json.dumps({"a.png": ["red cube"]}))
    with pytest.raises(LabelError, match="list of label lists"):
        load_conditions(path)


def test_load_conditions_unknown_name() -> None:
    pattern = r"unknown condition set 'tset'.*did you mean 'test'.*'new_test'"
    with pytest.raises(LabelError, match=pattern):
        load_conditions("tset")
