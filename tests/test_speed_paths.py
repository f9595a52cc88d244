"""The fast paths give the same answers as the plain ones.  pytest tests/test_speed_paths.py -q"""
import dataclasses

import albumentations as A
import numpy as np
import pytest
import torch
import ttach

from conftest import make_image
from kit.config import Config
from kit.data.loaders import (ImageDataset, cache_step, dataset_of, eval_transform, eval_transform_of, train_transform,
                              train_transform_of)
from kit.data.synth import write_synthetic
from kit.model import create_model
from kit.predict.inference import BatchedTTA
from kit.tta import transforms as tta_transforms


@pytest.mark.parametrize("views", [("hflip",), ("hflip", "vflip"), ("hflip", "scales"), ("five_crops",)])
def test_batched_tta_equals_ttach(views):
    torch.manual_seed(0)
    model = create_model("test_resnet", "spinal", 5, spinal_width=8).eval()
    x = torch.randn(3, 3, 32, 32)
    transforms = tta_transforms(views, 32)
    with torch.inference_mode():
        want = ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")(x)
        got = BatchedTTA(model, transforms)(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


KIT_CONFIGS = {  # the presets' transform keys, at test sizes
    "demo": dict(resize=36, img_size=32, rotate=15.0, hflip=0.0, mean=(0.5,) * 3, std=(0.5,) * 3),
    "recipe": dict(resize=46, img_size=44, rotate=15.0, hflip=0.5, mean=(0.507, 0.487, 0.441), std=(0.267, 0.256, 0.276)),
    "quick": dict(resize=36, img_size=32, rotate=15.0, hflip=0.5, resize_mode="pad"),
}


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory):
    """Six 2:1 photos-to-be (80x40): squash and pad treat them differently."""
    return write_synthetic(tmp_path_factory.mktemp("wide"), classes=2, per_class=3, aspect=2.0, side=40)


@pytest.mark.parametrize("build", [train_transform_of, eval_transform_of], ids=["train", "eval"])
@pytest.mark.parametrize("preset", sorted(KIT_CONFIGS))
def test_cached_images_give_identical_tensors(tmp_path, wide_data, build, preset):
    """Every transform the kit builds: the cache stores what its first step makes, so tensors are equal."""
    cfg = Config(**KIT_CONFIGS[preset])
    paths = [p.relative_to(wide_data).as_posix() for p in sorted((wide_data / "train").rglob("*.png"))]
    plain = dataset_of(cfg, wide_data, paths, [0] * 6, build(cfg))
    cached = dataset_of(dataclasses.replace(cfg, cache=True, cache_dir=str(tmp_path / "cache")), wide_data, paths,
                        [0] * 6, build(cfg))
    assert plain.cache_dir is None and type(cached.step) is type(cache_step(build(cfg)))
    for i in range(6):
        for _ in range(2):  # the second read comes from the cache
            assert torch.equal(plain[(i, 7 + i)][0], cached[(i, 7 + i)][0]), f"item {i} differs with the cache"
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 6


def test_memory_cache_gives_identical_tensors_within_its_budget(tmp_path):
    """memory_cache_mb: the same tensors epoch after epoch; images beyond the budget are decoded each time."""
    rng = np.random.default_rng(0)
    paths = [make_image(tmp_path / f"big{i}.png", (40 * i, 90, 160), rng, size=(600, 600)).name for i in range(3)]
    tf = train_transform(620, 600, 15.0, 0.5)
    plain = ImageDataset(root=tmp_path, paths=paths, labels=None, transform=tf)
    kept = ImageDataset(root=tmp_path, paths=paths, labels=None, transform=tf, memory_mb=2)  # 1.08 MB an image
    for epoch in range(2):
        for i in range(3):
            assert torch.equal(plain[(i, 10 * epoch + i)][0], kept[(i, 10 * epoch + i)][0]), f"image {i}, epoch {epoch}"
    assert list(kept.memory) == [0], "2 MB holds one 600x600 image, not two"
    kept._image(0)[:] = 0  # what a transform does to its input never reaches the kept image
    assert kept.memory[0].any()


def test_cache_needs_a_transform_that_starts_with_resize(folder_data, tmp_path):
    import albumentations as A
    crop_first = A.Compose([A.RandomResizedCrop(size=(32, 32)), A.Resize(32, 32)])
    with pytest.raises(ValueError, match="starts with A.Resize or A.LongestMaxSize"):
        ImageDataset(root=folder_data, paths=[], labels=[], transform=crop_first, cache_dir=tmp_path)


def test_unwritable_cache_falls_back_to_decoding_with_one_warning(tmp_path, folder_data, caplog):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")  # any write below it fails
    paths = [p.relative_to(folder_data).as_posix() for p in sorted((folder_data / "train").rglob("*.png"))][:3]
    tf = eval_transform(32)
    plain = ImageDataset(root=folder_data, paths=paths, labels=None, transform=tf)
    cached = ImageDataset(root=folder_data, paths=paths, labels=None, transform=tf, cache_dir=cache)
    with caplog.at_level("WARNING"):
        for i in range(3):
            assert torch.equal(plain[i][0], cached[i][0]), "a cache that can't be written still gives the image"
    assert caplog.text.count("cannot be written") == 1, caplog.text


def test_rank_slices_rebuild_the_one_process_batches():
    from kit.data.loaders import SeededSampler
    one = SeededSampler(20, seed=3, batch=8)
    ranks = [SeededSampler(20, seed=3, batch=8, rank=r, world=2) for r in range(2)]
    for s in [one, *ranks]:
        s.set_epoch(5)
    full = list(one)
    parts = [list(r) for r in ranks]
    assert all(len(p) == 8 for p in parts), "2 global batches of 8: 4 per rank per batch"
    for b in range(2):
        assert parts[0][b * 4:(b + 1) * 4] + parts[1][b * 4:(b + 1) * 4] == full[b * 8:(b + 1) * 8]


def test_draft_cache_is_close_and_kept_apart(tmp_path):
    from PIL import Image

    from kit.data.loaders import cache_path, load_resized
    yy, xx = np.mgrid[0:1000, 0:1400]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx // 6) % 256], -1).astype(np.uint8)).save(tmp_path / "big.jpg")
    step = A.Resize(200, 200)
    full = load_resized(tmp_path / "big.jpg", step, tmp_path / "c", 10**9, draft=False)
    fast = load_resized(tmp_path / "big.jpg", step, tmp_path / "c", 10**9, draft=True)
    assert full.shape == fast.shape == (200, 200, 3)
    assert cache_path(tmp_path / "c", tmp_path / "big.jpg", step, True) != cache_path(tmp_path / "c", tmp_path / "big.jpg", step)
    assert np.abs(full.astype(int) - fast.astype(int)).mean() < 8, "a reduced-size decode stays close to the full one"
