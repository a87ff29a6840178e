"""The web app: action functions directly, and end to end in a real headless Chromium (Debian's chromium +
chromedriver through Selenium): upload, Correct, move the strength slider, download the result.

Set PIXMEND_SCREENSHOTS=DIR to keep a screenshot of every tab (docs/images/app-*.png are made that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from pixmend import app  # noqa: E402

from conftest import synth_image, to_u8  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gpt-sample.png"


@pytest.fixture()
def ws():
    w = app.Workspace()
    yield w
    w.close()


def _small_png(tmp_path, name="a.png", size=(48, 64)):
    p = tmp_path / name
    Image.fromarray(to_u8(synth_image(*size))).save(p)
    return p


# ------------------------------------------------------------------------------------------------ actions
def test_correct_action_and_instant_reblend(ws, tmp_path):
    import pixmend

    src = _small_png(tmp_path)
    pair, saved, info, state = app.correct_action(ws, str(src), "gl-transformer", None, 1.0)
    assert pair[0] == str(src) and Path(saved).exists() and "cast_strength" in info
    full = np.asarray(Image.open(saved))
    pair0, saved0 = app.reblend_action(ws, state, 0.0)
    assert np.array_equal(np.asarray(Image.open(saved0)), np.asarray(Image.open(src)))  # strength 0 = input
    _, saved_half = app.reblend_action(ws, state, 0.5)
    ref = np.asarray(pixmend.correct(Image.open(src), strength=0.5))
    assert np.abs(np.asarray(Image.open(saved_half)).astype(int) - ref).max() <= 1
    assert not np.array_equal(full, np.asarray(Image.open(saved_half)))


def test_bad_upload_is_a_one_line_message(ws, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error) as e:
        app.correct_action(ws, str(bad), "gl-transformer", None, 1.0)
    assert "notes.png" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(gr.Error):
        app.correct_action(ws, None, "gl-transformer", None, 1.0)


def test_batch_zip_goes_on_past_bad_files(ws, tmp_path):
    good = _small_png(tmp_path, "good.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    zpath, report = app.correct_batch_action(ws, [str(good), str(bad)], "gl-transformer", None, 1.0)
    assert zipfile.ZipFile(zpath).namelist() == ["good.png"]
    assert "1 of 2" in report and "broken.jpg" in report


def test_editor_mask_from_painted_layer():
    bg = np.zeros((10, 12, 3), np.uint8)
    layer = np.zeros((10, 12, 4), np.uint8)
    layer[2:5, 3:7] = (255, 0, 255, 255)
    path, mask = app.editor_mask({"background": bg, "layers": [layer], "composite": None})
    assert mask.shape == (10, 12) and mask.sum() == 12 and mask[3, 4] == 1


def test_missing_weights_is_a_clear_message(ws, tmp_path, monkeypatch):
    from pixmend.models import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)  # as if nothing were shipped
    from pixmend.tasks import common

    monkeypatch.setattr(common, "_MODEL_CACHE", {})
    with pytest.raises(gr.Error, match="no shipped weights"):
        app.upscale_action(ws, str(_small_png(tmp_path)), 2)


def test_app_builds_with_every_tab():
    demo = app.build_app()
    try:
        cfg = demo.get_config_file()
        ids = {c.get("props", {}).get("elem_id") for c in cfg["components"]}
        assert {"correct-btn", "correct-strength", "upscale-btn", "upscale-ensemble", "upscale-bicubic",
                "inpaint-editor", "inpaint-ensemble", "generate-btn", "complete-btn", "batch-btn"} <= ids
    finally:
        demo.pixmend_workspace.close()


# ------------------------------------------------------------------------------------------ in a browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser_app(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    port = _free_port()
    demo = app.serve("127.0.0.1", port, block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver, f"http://127.0.0.1:{port}/", downloads
    finally:
        driver.quit()
        demo.close()
        demo.pixmend_workspace.close()


def _wait(fn, timeout=90, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # elements appear and re-render while Gradio updates
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _shot(driver, name):
    d = os.environ.get("PIXMEND_SCREENSHOTS")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(d) / f"app-{name}.png"))


def test_browser_upload_correct_slider_download(browser_app, tmp_path):
    import pixmend
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, url, downloads = browser_app
    driver.get(url)
    _wait(lambda: driver.find_element(By.ID, "correct-btn"), what="the app")
    src = tmp_path / "shot.png"
    Image.open(EXAMPLE).resize((192, 128)).save(src)
    driver.find_element(By.CSS_SELECTOR, "#correct-input input[type=file]").send_keys(str(src))
    _wait(lambda: driver.find_element(By.CSS_SELECTOR, "#correct-input img"), what="the upload preview")
    driver.find_element(By.ID, "correct-btn").click()
    link = _wait(lambda: driver.find_element(By.CSS_SELECTOR, "#correct-download a"), what="the result")
    first_href = link.get_attribute("href")
    _shot(driver, "correct")

    # move the strength slider: a click in the middle of the track, as a user would
    track = driver.find_element(By.CSS_SELECTOR, "#correct-strength input[type=range]")
    ActionChains(driver).move_to_element(track).click().perform()
    _wait(lambda: driver.find_element(By.CSS_SELECTOR, "#correct-download a").get_attribute("href") != first_href,
          what="the re-blended result")
    strength = float(driver.find_element(By.CSS_SELECTOR, "#correct-strength input[type=number]")
                     .get_attribute("value"))
    assert 0.2 < strength < 0.8

    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.find_element(By.CSS_SELECTOR, "#correct-download a").click()
    got = _wait(lambda: [p for p in downloads.iterdir() if p.suffix == ".png"], what="the download")[0]
    time.sleep(0.5)
    out = np.asarray(Image.open(got).convert("RGB")).astype(int)
    ref = np.asarray(pixmend.correct(Image.open(src), strength=strength)).astype(int)
    assert out.shape == ref.shape and np.abs(out - ref).max() <= 1


def test_browser_screenshots_of_every_tab(browser_app):
    from selenium.webdriver.common.by import By

    driver, url, _ = browser_app
    driver.get(url)
    _wait(lambda: driver.find_element(By.ID, "correct-btn"), what="the app")
    for tab in ("Upscale", "Inpaint", "Generate"):
        button = _wait(lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                if b.text.strip() == tab], what=f"the {tab} tab")[0]
        button.click()
        _wait(lambda: driver.find_element(By.ID, f"{tab.lower()}-btn" if tab != "Inpaint" else "inpaint-btn")
              .is_displayed(), what=f"the {tab} tab's button")
        _shot(driver, tab.lower())


def test_correct_with_watermark_reads_back(ws, tmp_path):
    from pixmend.io import read_image
    from pixmend.watermark import extract

    src = tmp_path / "w.png"
    Image.open(EXAMPLE).save(src)
    _, saved, _, state = app.correct_action(ws, str(src), "gl-transformer", None, 1.0, "pixmend-app")
    assert extract(read_image(saved).rgb) == "pixmend-app"
    _, saved2 = app.reblend_action(ws, state, 0.7)  # the slider keeps the mark
    assert extract(read_image(saved2).rgb) == "pixmend-app"


def test_upscale_action_with_and_without_self_ensemble(ws, tmp_path, monkeypatch):
    import torch

    from pixmend.models.registry import build_model

    torch.manual_seed(0)
    sr = build_model("window-sr-x2", dict(dim=12, depth=2, heads=2)).eval()
    with torch.no_grad():
        sr.head.weight.normal_(0.0, 0.05)  # not plain bicubic
    monkeypatch.setattr(app, "_model", lambda name, task: (sr, {"architecture": "window-sr-x2", "config": {}}))
    src = str(_small_png(tmp_path, "u.png", (12, 10)))
    plain, _ = app.upscale_action(ws, src, 2)
    ens, _ = app.upscale_action(ws, src, 2, True)
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(ens))
    assert a.shape == b.shape == (24, 20, 3) and not np.array_equal(a, b)


def test_upscale_action_bicubic_variant(ws, tmp_path, monkeypatch):
    """The Upscale tab's bicubic checkbox picks the -bicubic variant of the scale's model."""
    from pixmend.models.registry import build_model

    asked = []

    def fake_model(name, task):
        asked.append(name)
        scale = 4 if name.startswith("window-sr-x4") else 2
        return build_model("window-sr-x2", dict(dim=12, depth=2, heads=2, scale=scale)).eval(), {}

    monkeypatch.setattr(app, "_model", fake_model)
    src = str(_small_png(tmp_path, "b.png", (12, 10)))
    app.upscale_action(ws, src, 2, False, True)
    app.upscale_action(ws, src, 4, False, True)
    app.upscale_action(ws, src, 2)
    assert asked == ["window-sr-x2-bicubic", "window-sr-x4-bicubic", "window-sr-x2"]


def test_generate_and_complete_and_inpaint_actions(ws, tmp_path, monkeypatch):
    """The Generate / Complete / Inpaint tabs' actions on tiny models (fast, and independent of the shipped weights)."""
    import torch

    from pixmend.models.registry import build_model

    torch.manual_seed(0)
    gpt_cfg = dict(tokenizer="hsv", hsv_bits=[2, 2, 2], image_size=8, n_layer=1, n_head=2, n_embd=16)
    gpt = build_model("pixel-gpt", gpt_cfg).eval()
    inp = build_model("inpaint-unet", dict(base_channels=8, disc_channels=8)).eval()
    models = {"generate": (gpt, {"architecture": "pixel-gpt", "config": gpt_cfg}),
              "inpaint": (inp, {"architecture": "inpaint-unet", "config": {}})}
    monkeypatch.setattr(app, "_model", lambda name, task: models[task])
    grid = app.generate_action(3, 1, 1.0, 0, "", 2)
    assert len(grid) == 3 and grid[0].shape == (16, 16, 3) and grid[0].dtype == np.uint8
    outs = app.complete_action(str(_small_png(tmp_path)), 0.5, 0, 1.0, 2, 1)
    assert len(outs) == 2 and outs[0].shape == (8, 8, 3)
    src = _small_png(tmp_path, "b.png", (32, 40))
    layer = np.zeros((32, 40, 4), np.uint8)
    layer[8:16, 8:20] = (255, 0, 255, 255)
    saved, _ = app.inpaint_action(ws, {"background": str(src), "layers": [layer], "composite": None})
    before, after = np.asarray(Image.open(src)), np.asarray(Image.open(saved))
    keep = layer[..., 3] == 0
    assert np.array_equal(before[keep], after[keep])
    # the self-ensemble checkbox (a generator that is not just the prefill): known pixels still untouched,
    # the hole filled differently
    with torch.no_grad():
        inp.generator.head.weight.normal_(0.0, 0.2)
    plain, _ = app.inpaint_action(ws, {"background": str(src), "layers": [layer], "composite": None})
    saved_se, _ = app.inpaint_action(ws, {"background": str(src), "layers": [layer], "composite": None}, True)
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(saved_se))
    assert np.array_equal(before[keep], b[keep]) and not np.array_equal(a[~keep], b[~keep])


def test_serve_on_a_taken_port_is_one_line(capsys):
    from pixmend.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("pixmend: error: cannot start the web app on 127.0.0.1:") and str(port) in last
