"""RenderedClevrDataset: i-CLEVR items rendered on the fly, the same as make_dataset's files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from clevr_diffusion import ClevrDataset, ConditionalUNet, DDPMTrainer, NoiseConfig, RenderedClevrDataset, decode_labels
from clevr_diffusion.data import rendered
from clevr_diffusion.render import make_dataset, sample_scenes, scene_prefix

TINY = dict(num_scenes=3, image_size=16, supersample=1)


@pytest.fixture(scope="module")
def dataset() -> RenderedClevrDataset:
    return RenderedClevrDataset(**TINY)


def names(label: torch.Tensor) -> set[str]:
    return set(decode_labels(label))


def test_items_look_like_clevr_dataset_items(dataset: RenderedClevrDataset) -> None:
    assert len(dataset) == 9 and dataset.image_size == (16, 16) and dataset.device == torch.device("cpu")
    image, label = dataset[4]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert -1 <= image.min() < image.max() <= 1
    assert label.shape == (24,) and label.dtype == torch.float32 and label.sum() == 2
    assert names(label) == {f"{o.color} {o.shape}" for o in dataset.item_scene(4).objects}
    assert dataset[-1][1].sum() == 3 and dataset.locate(-1) == (2, 2)
    assert "RenderedClevrDataset(scenes=3, images=9, size=16x16" in repr(dataset)


def test_nested_frames_add_one_object_each(dataset: RenderedClevrDataset) -> None:
    for index in range(len(dataset)):
        scene, frame = dataset.locate(index)
        assert (scene, frame) == divmod(index, 3)
        objects = dataset.item_scene(index).objects
        assert objects == dataset.scene(scene).objects[: frame + 1]
    assert dataset.files[4] == "CLEVR_train_000001_1.png"

    flat = RenderedClevrDataset(**dict(TINY, nested=False))
    assert len(flat) == 3 and [len(flat.item_scene(i).objects) for i in range(3)] == [3, 3, 3]


def test_a_range_of_counts_nests_like_make_dataset() -> None:
    data = RenderedClevrDataset(**dict(TINY, num_scenes=4, style="clevr"))
    scenes = sample_scenes(4, 0, style="clevr")
    frames = [(i, k) for i, s in enumerate(scenes) for k in range(len(s.objects))]
    assert len(data) == len(frames) and len({len(s.objects) for s in scenes}) > 1
    assert [data.locate(i) for i in range(len(data))] == frames
    assert data.item_scene(len(data) - 1).objects == scenes[-1].objects
    # More objects than i-CLEVR's 3 a label, each name once.
    assert data[-1][1].sum() == len({f"{o.color} {o.shape}" for o in scenes[-1].objects}) > 3


def test_same_item_same_image_in_any_batch(dataset: RenderedClevrDataset) -> None:
    image, label = dataset[5]
    batch = dataset.__getitems__([5, 1, 5])
    assert torch.equal(batch[0][0], image) and torch.equal(batch[2][0], image)
    assert torch.equal(batch[0][1], label)
    assert torch.equal(batch[1][0], dataset[1][0]) and not torch.equal(batch[1][0], image)
    assert torch.equal(RenderedClevrDataset(**TINY)[5][0], image)
    assert dataset.__getitems__([]) == []


@pytest.mark.slow
def test_same_scenes_and_pixels_as_make_dataset(dataset: RenderedClevrDataset, tmp_path: Path) -> None:
    for i, scene in enumerate(sample_scenes(3, 0)):
        for k in range(3):
            assert dataset.item_scene(3 * i + k).objects == scene_prefix(scene, k + 1).objects
    # One scene written to files and read back equals the rendered items, bit for bit.
    root = make_dataset(tmp_path, num_scenes=1, width=16, height=16, supersample=1, progress=False)
    files = ClevrDataset(root, image_size=16)
    assert files.files == dataset.files[:3]
    for k in range(3):
        assert torch.equal(files[k][0], dataset[k][0]) and torch.equal(files[k][1], dataset[k][1])


@pytest.fixture
def render_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of scenes of each call of the renderer, from now on."""
    calls: list[int] = []
    render_items = rendered._render_items

    def counting(scenes, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(scenes))
        return render_items(scenes, *args, **kwargs)

    monkeypatch.setattr(rendered, "_render_items", counting)
    return calls


def test_data_loader_renders_a_batch_at_once(dataset: RenderedClevrDataset, render_calls: list[int]) -> None:
    calls = render_calls
    images, labels = next(iter(DataLoader(dataset, batch_size=4)))
    assert calls == [4] and images.shape == (4, 3, 16, 16) and labels.shape == (4, 24)
    assert torch.equal(images[3], dataset[3][0])


@pytest.mark.slow
def test_cache_renders_each_item_once_and_changes_nothing(dataset: RenderedClevrDataset, render_calls: list[int]) -> None:
    cached = RenderedClevrDataset(**TINY, cache=True)
    calls = render_calls
    first = cached.__getitems__([2, 5, 7])
    again = cached.__getitems__([7, 2, 8, -1])  # 8 and -1 are the same item, not yet rendered
    assert calls == [3, 1]  # item 8 (also -1) rendered once
    for (image, label), index in zip(first + again, [2, 5, 7, 7, 2, 8, 8], strict=True):
        assert torch.equal(image, dataset[index][0]) and torch.equal(label, dataset[index][1])
    assert "cache=True" in repr(cached)


def test_gather_reads_whole_batches_and_renders_each_item_once(dataset: RenderedClevrDataset, render_calls: list[int]) -> None:
    cached = RenderedClevrDataset(**TINY, cache=True)
    assert cached.can_gather and not dataset.can_gather
    images, labels = cached.gather(torch.tensor([4, 1, 4]))
    assert render_calls == [2] and cached.num_cached == 2
    cached.make_resident(chunk=3)  # the 7 items left, 3 a call
    assert render_calls == [2, 3, 3, 1] and cached.num_cached == 9
    again, _ = cached.gather(torch.tensor([4, 8]))
    assert render_calls == [2, 3, 3, 1]  # all kept: a gather renders nothing
    for row, index in enumerate([4, 1, 4]):
        assert torch.equal(images[row], dataset[index][0]) and torch.equal(labels[row], dataset[index][1])
    assert torch.equal(again[1], dataset[8][0])
    with pytest.raises(RuntimeError, match="cache=True"):
        dataset.gather(torch.tensor([0]))


def test_scenes_are_drawn_in_workers_by_default_when_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = []
    real = rendered.parallel_map

    def recording(fn, items, workers_: int = 1):  # type: ignore[no-untyped-def]
        workers.append(workers_)
        return real(fn, items, 1)

    monkeypatch.setattr(rendered, "parallel_map", recording)
    monkeypatch.setattr(rendered, "available_cores", lambda: 7)
    RenderedClevrDataset(**TINY).draw_scenes()  # 3 scenes: not worth starting processes
    many = RenderedClevrDataset(num_scenes=rendered.PARALLEL_MIN_SCENES, image_size=16)
    many._scenes = {}  # nothing drawn
    monkeypatch.setattr(rendered, "scene_at", lambda i, **kw: None)
    monkeypatch.setattr(many, "_keep", lambda i, drawn: None)
    many.draw_scenes()
    assert workers == [1, 7]


@pytest.mark.slow
def test_scenes_drawn_up_front_in_workers_are_the_lazy_ones(dataset: RenderedClevrDataset) -> None:
    eager = RenderedClevrDataset(**TINY)
    eager.draw_scenes(workers=2)
    assert [eager.scene(i) for i in range(3)] == [dataset.scene(i) for i in range(3)]
    assert torch.equal(eager[4][0], dataset[4][0])


def test_trainer_trains_on_it(tiny_unet: ConditionalUNet, tmp_path: Path) -> None:
    trainer = DDPMTrainer(
        tiny_unet, RenderedClevrDataset(**TINY), NoiseConfig(num_train_timesteps=50),
        output_dir=str(tmp_path), max_steps=2, batch_size=4, warmup_steps=1, sample_every=-1, log_every=1,
    )
    assert (trainer.train() / "config.json").is_file()
    assert len(trainer.metrics()) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_scenes=0), "num_scenes"),
        (dict(image_size=0), "image_size"),
        (dict(image_size=(16, 16, 3)), "image_size"),
        (dict(style="photo"), "unknown style"),
        (dict(num_objects=30), "at most"),
        (dict(seed=-1), "seed"),
        (dict(supersample=0), "supersample"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenderedClevrDataset(**kwargs)  # type: ignore[arg-type]


def test_out_of_range_index_raises(dataset: RenderedClevrDataset) -> None:
    with pytest.raises(IndexError):
        dataset[9]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, -10])
