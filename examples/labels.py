"""The i-CLEVR label vocabulary: names <-> multi-hot vectors, condition sets, errors.

Run from the repository root:

    python examples/labels.py
"""

from __future__ import annotations

from clevr_diffusion.labels import (
    OBJECT_NAMES,
    LabelError,
    Vocabulary,
    decode_labels,
    encode_batch,
    encode_labels,
    load_conditions,
)


def main() -> None:
    vocab = Vocabulary.default()
    print(f"{len(vocab)} objects, e.g. {OBJECT_NAMES[:3]} ... {OBJECT_NAMES[-1]!r}")

    # Case, extra spaces and the British 'grey' are accepted; order does not matter.
    vector = encode_labels(["Red Sphere", "cyan  cylinder", "grey cube"])
    print("multi-hot:", vector.int().tolist())
    print("decoded:  ", decode_labels(vector))  # names come back in vocabulary order

    batch = encode_batch([["blue cube"], ["yellow sphere", "green cylinder"]])
    print("batch shape:", tuple(batch.shape), "->", decode_labels(batch))

    test = load_conditions("test")
    print(f"test.json: {len(test)} conditions; #25 = {test[25]}")

    # Every mistake raises LabelError (a ValueError) that says what is wrong and how to fix it.
    for bad in (["pink cube"], "red cube", ["red cube", "red cube"], ["cube red"]):
        try:
            encode_labels(bad)
        except LabelError as err:
            print(f"\n{bad!r}:\n  {err}")


if __name__ == "__main__":
    main()
