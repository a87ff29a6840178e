"""Synthetic GPT-style degradations: determinism, ranges, and that each effect does what it claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixmend import degrade
from pixmend.metrics import mean_lab

from conftest import synth_image


@pytest.fixture(scope="module")
def img():
    return synth_image(48, 64, seed=3)


def _hf_energy(rgb: np.ndarray) -> float:
    """Energy of the discrete Laplacian: a high-frequency measure."""
    lap = (4 * rgb[1:-1, 1:-1] - rgb[:-2, 1:-1] - rgb[2:, 1:-1] - rgb[1:-1, :-2] - rgb[1:-1, 2:])
    return float(np.mean(lap.astype(np.float64) ** 2))


def test_seeded_determinism(img):
    for seed in range(6):
        a, da = degrade.gpt_degrade(img, seed)
        b, db = degrade.gpt_degrade(img, seed)
        np.testing.assert_array_equal(a, b)
        assert da.to_dict() == db.to_dict()
    # a Generator works too, and different seeds give different damage
    outs = [degrade.gpt_degrade(img, np.random.default_rng(s), force="cast+sharpen")[0] for s in (1, 2)]
    assert not np.allclose(outs[0], outs[1])


def test_output_range_and_dtype(img):
    for seed in range(12):
        out, _ = degrade.gpt_degrade(img, seed)
        assert out.dtype == np.float32
        assert out.shape == img.shape
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_identity_cast_is_identity(img):
    ident = degrade.CastParams(matrix=np.eye(3).tolist(), offset=[0.0, 0.0, 0.0], gamma=[1.0, 1.0, 1.0],
                               saturation=1.0)
    out = degrade.apply_cast(img, ident)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_warm_casts_raise_mean_b(img):
    b0 = mean_lab(img)[2]
    deltas = []
    for seed in range(20):
        cast = degrade.sample_cast(np.random.default_rng(seed), warm=True)
        deltas.append(mean_lab(degrade.apply_cast(img, cast))[2] - b0)
    deltas = np.array(deltas)
    assert deltas.mean() > 5.0, deltas  # clearly yellower on average
    assert (deltas > 0).mean() >= 0.9, deltas  # and almost always


def test_unsharp_mask_adds_high_frequencies(img):
    soft = img * 0.6 + 0.2  # away from 0/1 so clipping does not hide the effect
    base = _hf_energy(soft)
    for luma_only, gain in ((False, 2.0), (True, 1.3)):
        sharp = degrade.unsharp_mask(soft, radius=1.5, amount=1.0, luma_only=luma_only)
        assert sharp.dtype == np.float32 and sharp.shape == soft.shape
        assert _hf_energy(sharp) > gain * base
    weak = _hf_energy(degrade.unsharp_mask(soft, 1.5, 0.3))
    strong = _hf_energy(degrade.unsharp_mask(soft, 1.5, 1.2))
    assert base < weak < strong


def test_unsharp_mask_amount_zero_is_identity(img):
    np.testing.assert_array_equal(degrade.unsharp_mask(img, 2.0, 0.0), img)
    np.testing.assert_array_equal(degrade.unsharp_mask(img, 2.0, 0.0, luma_only=True), img)


def test_force_cast_and_sharpen(img):
    for seed in range(15):
        out, deg = degrade.gpt_degrade(img, seed, force="cast+sharpen")
        assert deg.kind == "cast+sharpen"
        assert deg.cast is not None and deg.sharpen is not None
        assert not np.allclose(out, img, atol=1e-3)


def test_clean_share_leaves_image_untouched():
    small = synth_image(16, 16, seed=1)
    kinds = []
    for seed in range(120):
        out, deg = degrade.gpt_degrade(small, seed)
        kinds.append(deg.kind)
        if deg.kind == "clean":
            assert deg.cast is None and deg.sharpen is None and deg.jpeg_quality is None
            np.testing.assert_array_equal(out, small)
        else:
            assert not np.array_equal(out, small)
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert set(counts) == {"clean", "cast", "sharpen", "cast+sharpen"}, counts
    # p_clean = 0.12 by default: expect about 14 of 120
    assert 4 <= counts["clean"] <= 30, counts
    assert counts["cast+sharpen"] > counts["clean"]


def test_sampled_params_within_config_ranges():
    cfg = degrade.DegradeConfig()
    for seed in range(60):
        deg = degrade.sample_degradation(np.random.default_rng(seed), cfg)
        if deg.sharpen is not None:
            assert cfg.radius_range[0] <= deg.sharpen.radius <= cfg.radius_range[1]
            assert cfg.amount_range[0] <= deg.sharpen.amount <= cfg.amount_range[1]
        if deg.jpeg_quality is not None:
            assert cfg.jpeg_range[0] <= deg.jpeg_quality <= cfg.jpeg_range[1]
    # p_clean = 1: always clean
    always = degrade.DegradeConfig(p_clean=1.0)
    assert all(degrade.sample_degradation(np.random.default_rng(s), always).kind == "clean" for s in range(10))


def test_to_dict_is_json_serialisable(img):
    for seed in range(10):
        _, deg = degrade.gpt_degrade(img, seed)
        d = deg.to_dict()
        back = json.loads(json.dumps(d))
        assert back["kind"] == deg.kind
        if deg.cast is not None:
            assert np.asarray(back["cast"]["matrix"]).shape == (3, 3)


def test_jpeg_roundtrip_close(img):
    out = degrade.jpeg_roundtrip(img, 90)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.abs(out - img).mean() < 0.03


def test_illustrate_shape_and_range():
    for h, w, seed in ((40, 56, 0), (33, 47, 1)):
        src = synth_image(h, w, seed=seed)
        out = degrade.illustrate(src, np.random.default_rng(seed))
        assert out.shape == src.shape
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_degrade_config_from_training_config():
    from pixmend.errors import PixmendError
    from pixmend.tasks.correct import degrade_config

    d = degrade_config({"degrade_p_clean": 0.3, "degrade_warmth_range": [0.05, 1.0], "crop": 256})
    assert d.p_clean == 0.3 and d.warmth_range == (0.05, 1.0) and d.p_warm == degrade.DegradeConfig().p_warm
    with pytest.raises(PixmendError, match="degrade_p_cleen"):
        degrade_config({"degrade_p_cleen": 0.3})
    rng = np.random.default_rng(0)
    weak = [degrade.sample_cast(rng, warmth_range=(0.0, 0.0)) for _ in range(3)]
    assert all(np.allclose(np.diag(c.matrix), 1.0) for c in weak)  # warmth 0: no channel loss


def test_clean_look_setting_is_checked(photo_dir):
    from pixmend.errors import PixmendError
    from pixmend.tasks.correct import CorrectTask

    task = CorrectTask()
    cfg = {**task.defaults("gl-transformer"), "seed": 0, "val_split": 0.2, "wide_views": True}
    train_ds, val_ds = task.datasets({**cfg, "clean_look": 0.5}, photo_dir)
    assert train_ds.clean_look == val_ds.clean_look == 0.5
    assert task.datasets(cfg, photo_dir)[0].clean_look == 0.0  # off unless asked for
    for bad in (-1, 4, "warm", True):
        with pytest.raises(PixmendError, match="clean_look"):
            task.datasets({**cfg, "clean_look": bad}, photo_dir)
    assert not train_ds.look_warm_only
    assert task.datasets({**cfg, "clean_look": 0.5, "clean_look_warm": True}, photo_dir)[0].look_warm_only
    with pytest.raises(PixmendError, match="clean_look_warm must be true or false"):
        task.datasets({**cfg, "clean_look_warm": 1}, photo_dir)
