"""Datasets: the seed's pixel sequences, file splits, paired folders and on-the-fly synthetic pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixmend import data as D
from pixmend.errors import PixmendError

from conftest import save_png, synth_image


def ramp(h: int, w: int) -> np.ndarray:
    """uint8 image whose every channel holds the pixel's flat (row-major) index (needs h*w <= 256)."""
    assert h * w <= 256
    return np.repeat(np.arange(h * w, dtype=np.uint8).reshape(h, w, 1), 3, axis=2)


def pair_of(h, w, seed=0):
    a = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    return a, 255 - a  # target = inverse: lets a test check that input and target come from the same place


# ------------------------------------------------------------------------------------------- 1D windows
@pytest.mark.parametrize("h,w,n,stride", [(8, 10, 16, 4), (7, 9, 16, 5), (12, 12, 128, 64), (5, 5, 25, 1)])
def test_1d_count(h, w, n, stride):
    a, b = pair_of(h, w)
    ds = D.PixelDataset([a], [b], num_pixels=n, mode="1D", stride=stride)
    assert len(ds) == (h * w - n) // stride + 1


def test_1d_count_sums_over_images():
    shapes = [(8, 10), (6, 7), (9, 9)]
    pairs = [pair_of(h, w, i) for i, (h, w) in enumerate(shapes)]
    ds = D.PixelDataset([a for a, _ in pairs], [b for _, b in pairs], num_pixels=12, mode="1D", stride=5)
    assert len(ds) == sum((h * w - 12) // 5 + 1 for h, w in shapes)
    # the last item comes from the last image, the first from the first
    assert ds.locate(0) == (0, 0)
    assert ds.locate(len(ds) - 1)[0] == 2
    x, _ = ds[len(ds) - 1]
    assert x.shape == (12, 3)


def test_1d_window_wraps_onto_next_row():
    h, w, n, stride = 8, 10, 16, 4
    img = ramp(h, w)
    ds = D.PixelDataset([img], [img.copy()], num_pixels=n, mode="1D", stride=stride)
    for i in range(len(ds)):
        x, _ = ds[i]
        flat = np.rint(x[:, 0].numpy() * 255).astype(int)
        np.testing.assert_array_equal(flat, np.arange(i * stride, i * stride + n))
    # window 2 starts at flat 8 (row 0, col 8) and continues at row 1, col 0
    x, _ = ds[2]
    got = np.rint(x.numpy() * 255).astype(int)[:, 0]
    assert list(got[:3]) == [8, 9, 10] and got[2] == img[1, 0, 0]


def test_uint8_becomes_float_in_unit_range():
    a = np.zeros((8, 8, 3), np.uint8)
    a[0, 0] = [255, 128, 0]
    ds = D.PixelDataset([a], [a.copy()], num_pixels=4, mode="1D", stride=4)
    x, y = ds[0]
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), [1.0, 128 / 255, 0.0], atol=1e-7)
    # float images are taken as already in [0, 1]
    f = a.astype(np.float32) / 255
    xf, _ = D.PixelDataset([f], [f], num_pixels=4, mode="1D", stride=4)[0]
    np.testing.assert_allclose(xf.numpy(), x.numpy(), atol=1e-7)


# ------------------------------------------------------------------------------------------- 2D patches
@pytest.mark.parametrize("h,w,n,stride", [(10, 12, 16, 2), (9, 13, 9, 3), (16, 16, 16, 4)])
def test_2d_shape_count_and_content(h, w, n, stride):
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = np.arange(h)[:, None] / 100  # row
    img[..., 1] = np.arange(w)[None, :] / 100  # column
    ds = D.PixelDataset([img], [img], num_pixels=n, mode="2D", stride=stride)
    s = int(round(n ** 0.5))
    assert len(ds) == ((h - s) // stride + 1) * ((w - s) // stride + 1)
    per_row = (w - s) // stride + 1
    for i in range(len(ds)):
        x, _ = ds[i]
        assert x.shape == (n, 3)
        rows = np.rint(x[:, 0].numpy() * 100).reshape(s, s)
        cols = np.rint(x[:, 1].numpy() * 100).reshape(s, s)
        y0, x0 = (i // per_row) * stride, (i % per_row) * stride
        np.testing.assert_array_equal(rows, np.arange(y0, y0 + s)[:, None].repeat(s, 1))
        np.testing.assert_array_equal(cols, np.arange(x0, x0 + s)[None, :].repeat(s, 0))


def test_2d_needs_square_number():
    a, b = pair_of(8, 8)
    with pytest.raises(PixmendError):
        D.PixelDataset([a], [b], num_pixels=12, mode="2D", stride=2)


def test_bad_arguments_raise():
    a, b = pair_of(8, 8)
    with pytest.raises(PixmendError):
        D.PixelDataset([a], [b], num_pixels=16, mode="3D")
    with pytest.raises(PixmendError):
        D.PixelDataset([a], [b], num_pixels=16, stride=0)
    with pytest.raises(PixmendError):
        D.PixelDataset([a], [b[:4]], num_pixels=16)
    with pytest.raises(PixmendError):
        D.PixelDataset([a, a], [b], num_pixels=16)


# ------------------------------------------------------------------------------------------------ RAND
def test_rand_distinct_pixels_and_count():
    h, w, n = 12, 14, 16
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = (np.arange(h * w).reshape(h, w)) / 1000
    ds = D.PixelDataset([img, img], [img, img], num_pixels=n, mode="rand", stride=1, seed=3)
    assert len(ds) == 2 * (h * w // n)
    for i in range(len(ds)):
        x, _ = ds[i]
        idx = np.rint(x[:, 0].numpy() * 1000).astype(int)
        assert len(set(idx.tolist())) == n
        assert idx.min() >= 0 and idx.max() < h * w
    # seeded per (seed, epoch, index): same item twice is equal; a new epoch draws new positions
    np.testing.assert_array_equal(ds[3][0].numpy(), ds[3][0].numpy())
    before = ds[3][0].numpy()
    ds.set_epoch(1)
    assert not np.array_equal(before, ds[3][0].numpy())


@pytest.mark.parametrize("mode,n", [("1D", 16), ("2D", 16), ("RAND", 16)])
def test_input_and_target_at_same_positions(mode, n):
    a, b = pair_of(11, 13, seed=5)
    ds = D.PixelDataset([a], [b], num_pixels=n, mode=mode, stride=3, seed=1)
    for i in range(0, len(ds), 3):
        x, y = ds[i]
        np.testing.assert_allclose(y.numpy(), 1.0 - x.numpy(), atol=1e-6)


# ---------------------------------------------------------------------------------------------- folders
def test_split_files_seeded_and_disjoint():
    files = [f"f{i}.png" for i in range(20)]
    tr, va = D.split_files(files, 0.25, seed=7)
    assert (tr, va) == D.split_files(files, 0.25, seed=7)
    assert set(tr).isdisjoint(va)
    assert sorted(tr + va) == sorted(files)
    assert len(va) == 5
    assert D.split_files(files, 0.25, seed=8) != (tr, va)
    # tiny sets: at least one on each side, and no split for one file or val_split 0
    assert [len(s) for s in D.split_files(["a", "b"], 0.1, 0)] == [1, 1]
    assert D.split_files(["a"], 0.5, 0) == (["a"], [])
    assert D.split_files(files, 0.0, 0) == (files, [])


def test_image_files_and_paired_folders(tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "outputs").mkdir()
    img = synth_image(8, 8)
    for name in ("a", "b", "c"):
        save_png(tmp_path / "inputs" / f"{name}.png", img)
    for name in ("b", "c", "d"):
        save_png(tmp_path / "outputs" / f"{name}.png", img)
    (tmp_path / "inputs" / "notes.txt").write_text("not an image")
    pairs = D.paired_folders(tmp_path)
    assert [(p.name, q.name) for p, q in pairs] == [("b.png", "b.png"), ("c.png", "c.png")]
    assert all(p.parent.name == "inputs" and q.parent.name == "outputs" for p, q in pairs)
    assert [p.name for p in D.image_files(tmp_path / "inputs")] == ["a.png", "b.png", "c.png"]
    # not paired: None; paired but no common names: error
    assert D.paired_folders(tmp_path / "inputs") is None
    other = tmp_path / "other"
    (other / "inputs").mkdir(parents=True)
    (other / "outputs").mkdir()
    save_png(other / "inputs" / "x.png", img)
    save_png(other / "outputs" / "y.png", img)
    with pytest.raises(PixmendError):
        D.paired_folders(other)
    with pytest.raises(PixmendError):
        D.image_files(tmp_path / "missing")


# --------------------------------------------------------------------------------------- synthetic pairs
@pytest.fixture(scope="module")
def photos():
    return [(synth_image(40, 52, seed=i) * 255).astype(np.uint8) for i in range(2)]


def test_synthetic_items_shapes_and_ranges(photos):
    ds = D.SyntheticCorrectionDataset(photos, crop=32, length=6, seed=0)
    assert len(ds) == 6
    for i in range(len(ds)):
        bad, clean, amount = ds[i]
        assert bad.shape == clean.shape == (3, 32, 32)
        assert bad.dtype == clean.dtype == torch.float32
        for t in (bad, clean):
            assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
        assert amount.shape == () and float(amount) >= 0.0
    # the crop never exceeds the photo
    big = D.SyntheticCorrectionDataset(photos, crop=256, length=1, seed=0)
    assert big[0][0].shape == (3, 40, 40)


def test_synthetic_determinism_per_epoch_and_index(photos):
    ds = D.SyntheticCorrectionDataset(photos, crop=24, length=4, seed=1, p_illustration=0.5)
    a = [t.clone() for t in ds[2]]
    b = ds[2]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(ds[1][1], ds[2][1])
    ds.set_epoch(1)
    assert not torch.equal(ds[2][1], a[1])
    ds.set_epoch(0)
    torch.testing.assert_close(ds[2][0], a[0], rtol=0, atol=0)


def test_synthetic_fixed_ignores_epoch(photos):
    ds = D.SyntheticCorrectionDataset(photos, crop=24, length=4, seed=1, fixed=True)
    first = [t.clone() for t in ds[3]]
    ds.set_epoch(5)
    for x, y in zip(first, ds[3]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_paired_crop_dataset_aligned():
    a = (synth_image(30, 40, seed=2) * 255).astype(np.uint8)
    ds = D.PairedCropDataset([(a, 255 - a)], crop=16, length=5, seed=0)
    for i in range(len(ds)):
        x, y, amount = ds[i]
        assert x.shape == (3, 16, 16)
        torch.testing.assert_close(y, 1.0 - x, rtol=0, atol=1e-6)
        assert float(amount) == -1.0
    with pytest.raises(PixmendError):
        D.PairedCropDataset([(a, a[:10])], crop=8)


def test_clean_look_on_both_sides_of_a_pair(photos):
    """clean_look changes the clean photo itself: with no damage drawn, bad == clean, and both differ from the
    photo without the look; strength 0 draws nothing (the same items as before)."""
    from pixmend import degrade

    cfg = degrade.DegradeConfig(p_clean=1.0, p_jpeg=0.0)
    plain = D.SyntheticCorrectionDataset(photos, crop=24, length=4, seed=3, p_illustration=0.0, degrade_cfg=cfg)
    off = D.SyntheticCorrectionDataset(photos, crop=24, length=4, seed=3, p_illustration=0.0, degrade_cfg=cfg,
                                       clean_look=0.0)
    look = D.SyntheticCorrectionDataset(photos, crop=24, length=4, seed=3, p_illustration=0.0, degrade_cfg=cfg,
                                        clean_look=1.0, thumb=16)
    for i in range(4):
        assert torch.equal(plain[i][1], off[i][1])
        item = look[i]
        torch.testing.assert_close(item[0], item[1], rtol=0, atol=0)
        torch.testing.assert_close(item[5], item[6], rtol=0, atol=0)  # the wide view gets the same look
        assert not torch.equal(item[1], plain[i][1])


def test_sample_look_ranges():
    from pixmend import degrade

    grey = np.full((4, 4, 3), 0.5, np.float32)
    rng = np.random.default_rng(0)
    none = degrade.sample_look(rng, 0.0)
    np.testing.assert_allclose(degrade.apply_look(grey, none), grey, atol=1e-6)
    shifts = []
    for i in range(200):
        out = degrade.apply_look(grey, degrade.sample_look(rng, 1.0))
        assert out.min() >= 0 and out.max() <= 1
        shifts.append(out[0, 0, 0] - out[0, 0, 2])  # red minus blue: warm > 0, cool < 0
    shifts = np.array(shifts)
    assert (shifts > 0.02).any() and (shifts < -0.02).any() and np.abs(shifts).max() < 0.12
    warm = [degrade.sample_look(rng, 1.0, warm_only=True) for _ in range(200)]
    assert all(look.gains[0] >= look.gains[2] for look in warm)  # white balance neutral to warm, never cool
    warm = np.array([(o := degrade.apply_look(grey, look))[0, 0, 0] - o[0, 0, 2] for look in warm])
    assert (warm > 0.02).any() and warm.max() < 0.12
