"""The fast paths give the same answers as the plain ones.  pytest tests/test_speed_paths.py -q"""
import numpy as np
import pytest
import torch
import ttach

from kit.data import ImageDataset, eval_transform, train_transform
from kit.model import create_model
from kit.predict import BatchedTTA, tta_transforms


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


def test_cached_images_give_identical_tensors(tmp_path, folder_data):
    paths = [p.relative_to(folder_data).as_posix() for p in sorted((folder_data / "train").rglob("*.png"))][:6]
    mean, std = (0.5,) * 3, (0.25,) * 3
    for tf, size in ((train_transform(36, 32, 15, 0.5, mean, std), 36), (eval_transform(32, mean, std), 32)):
        plain = ImageDataset(folder_data, paths, [0] * 6, tf)
        cached = ImageDataset(folder_data, paths, [0] * 6, tf, cache_dir=tmp_path / "cache", size=size)
        for i in range(6):
            for _ in range(2):  # the second read comes from the cache
                assert torch.equal(plain[(i, 7 + i)][0], cached[(i, 7 + i)][0]), f"item {i} differs with the cache"
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 12


def test_rank_slices_rebuild_the_one_process_batches():
    from kit.data import SeededSampler
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

    from kit.data import cache_path, load_resized
    yy, xx = np.mgrid[0:1000, 0:1400]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx // 6) % 256], -1).astype(np.uint8)).save(tmp_path / "big.jpg")
    full = load_resized(tmp_path / "big.jpg", 200, tmp_path / "c", 10**9, draft=False)
    fast = load_resized(tmp_path / "big.jpg", 200, tmp_path / "c", 10**9, draft=True)
    assert full.shape == fast.shape == (200, 200, 3)
    assert cache_path(tmp_path / "c", tmp_path / "big.jpg", 200, True) != cache_path(tmp_path / "c", tmp_path / "big.jpg", 200)
    assert np.abs(full.astype(int) - fast.astype(int)).mean() < 8, "a reduced-size decode stays close to the full one"
