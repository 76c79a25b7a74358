"""The gate's HTML report, rendered in a real headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from support.cli import run_warmstart
from support.gate import curve, fake_evaluation, fake_probe, flip

from warmstart.artifacts import HTML_FILE
from warmstart.config import DataConfig, GateConfig
from warmstart.gate.policy import gate
from warmstart.gate.report import COLORS
from warmstart.ingest.dataset import ingest

CHROMIUM = shutil.which("chromium")
# What a sandboxed root process on a closed network needs (see the machine notes): no sandbox, no GPU,
# and none of Chromium's background connections.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module", params=[1, 3], ids=["one seed", "three seeds"])
def report_dir(request, tmp_path_factory, synthetic_csv):
    """A gate run on known predictions (a clearly better pretrained arm) with a real data card; one
    training seed, or three with curves that differ, so the report shows their spread."""
    work = tmp_path_factory.mktemp("report")
    ingest(
        DataConfig(source=str(synthetic_csv), test_source="", text_column="text", label_column="sentiment"),
        work / "data",
    )
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 400)
    validation_labels = rng.integers(0, 2, 200)

    def validation(accuracies):
        return validation_labels, np.stack([flip(validation_labels, 1 - a, rng) for a in accuracies], axis=1)

    p, s = [], []
    for seed in range(request.param):
        shift = 0.04 * seed
        pretrained_curve = [0.55 - shift, 0.8 - shift, 0.86, 0.88 - shift / 2]
        scratch_curve = [0.5, 0.6 + shift, 0.66 + shift, 0.7]
        for fraction, worse in ((0.3, 0.08), (1.0, 0.0)):
            p.append(
                fake_evaluation(
                    work / f"p{seed}-{fraction}",
                    "pretrained",
                    labels,
                    flip(labels, 0.1 + worse, rng),
                    curve(pretrained_curve),
                    seed=seed,
                    fraction=fraction,
                    learning_rate=5e-5,
                    validation=validation(pretrained_curve),
                    trials=[(2e-5, 0.85), (5e-5, pretrained_curve[-1]), (1e-4, 0.8)],
                )
            )
            s.append(
                fake_evaluation(
                    work / f"s{seed}-{fraction}",
                    "scratch",
                    labels,
                    flip(labels, 0.3 + worse, rng),
                    curve(scratch_curve),
                    seed=seed,
                    fraction=fraction,
                    learning_rate=1e-3,
                    validation=validation(scratch_curve),
                    trials=[(2e-4, 0.6), (5e-4, 0.65), (1e-3, scratch_curve[-1])],
                )
            )
    probe = fake_probe(work / "screening", labels, flip(labels, 0.2, rng), flip(labels, 0.4, rng))
    gate(
        GateConfig(bootstrap_samples=2000),
        p,
        s,
        work / "gate",
        dataset_dir=work / "data",
        screening_dir=probe,
    )
    return work / "gate"


def _tint(color: str, alpha: float) -> str:
    """`color` drawn with `alpha` over white."""
    channels = (round(255 - alpha * (255 - int(color[i : i + 2], 16))) for i in (1, 3, 5))
    return "#" + "".join(f"{c:02x}" for c in channels)


def _near(pixels: np.ndarray, color: str, tolerance: int = 40) -> int:
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3].astype(int) - rgb).sum(axis=-1) < tolerance).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium_with_its_plots_and_no_errors(report_dir, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console",
            lambda m: (
                problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto((report_dir / HTML_FILE).as_uri())
        page.wait_for_load_state("load")
        heading = page.inner_text("h1")
        images = page.evaluate(
            "[...document.images].map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
        )
        for name in ("curves", "gain", "confusion", "efficiency"):
            page.locator(f"#{name}").screenshot(path=tmp_path / f"{name}.png")
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        shutil.copyfile(
            tmp_path / "report.png", f"/tmp/report-{len(images)}-{id(page)}.png"
        ) if os.environ.get("KEEP_REPORT") else None
        text = page.inner_text("main")
        browser.close()

    assert not problems
    assert heading.split() == ["Transfer", "gate:", "positive", "passed"]
    assert {
        name for name, complete, width, height in images if complete and width > 300 and height > 200
    } == {
        "curves",
        "gain",
        "confusion",
        "efficiency",
    }
    for name in ("curves", "gain", "confusion", "efficiency"):
        pixels = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"))
        assert pixels.std() > 20, f"{name} looks blank"
    curves = np.asarray(Image.open(tmp_path / "curves.png").convert("RGB"))
    assert _near(curves, COLORS["pretrained"]) > 200 and _near(curves, COLORS["scratch"]) > 200
    several = (report_dir.parent / "p1-1.0").exists()
    # The seeds' spread: each arm's colour at 15% over white fills a band.
    bands = [_near(curves, _tint(COLORS[arm], 0.15), tolerance=12) for arm in ("pretrained", "scratch")]
    assert all(band > 2000 for band in bands) if several else not any(band > 2000 for band in bands), bands
    if several:
        assert "Per seed (accuracy). The registered model is seed" in text and "mean of 3 seeds" in text
    for part in (
        "Decision rule:",
        "McNemar's exact test",
        "Learning curves",
        "Confusion matrices",
        "Lineage",
        "label pos",
        # The start by linear probe, and every test with its interval and finding.
        "start (linear probe on frozen features)",
        "The start is a linear probe",
        "slope (normalised area under the curve)",
        # The floor, both arms against it.
        "Floor: a model that learned nothing",
        "The scratch arm learned: its interval lies above the floor.",
        # Every trial of both arms' search, and the chosen rates.
        "Tuning: both arms' learning rates",
        "Chosen rates: pretrained: seed 0 → 5e-05",
        "of [2e-05, 5e-05, 0.0001]; scratch: seed 0 → 0.001",
        "Warning: the scratch arm's chosen rate 0.001 is the highest of its grid",
        # What pretraining is worth in labelled rows.
        "What pretraining is worth in labelled rows",
    ):
        assert part in text, part
    # One chosen trial per arm, seed and data fraction (two fractions here).
    assert text.count("\tchosen") == 4 * (3 if several else 1), text
    assert "\thigher" in text


def test_warmstart_report_opens_the_latest_report_of_a_work_directory(report_dir, tmp_path, monkeypatch):
    import json

    work = tmp_path / "warmstart-work"
    work.mkdir()
    (work / "summary.json").write_text(json.dumps({"report": str(report_dir / HTML_FILE)}))
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))
    result = run_warmstart("report", str(work))
    assert result.returncode == 0, result.stderr
    assert opened.read_text().strip() == (report_dir / HTML_FILE).resolve().as_uri()

    # A skipped run's summary names no report: the newest one under runs/ opens.
    for age, run in ((100, "older"), (0, "newer")):
        target = work / "runs" / run / "gate" / "result" / HTML_FILE
        target.parent.mkdir(parents=True)
        shutil.copyfile(report_dir / HTML_FILE, target)
        os.utime(target, (target.stat().st_mtime - age,) * 2)
    (work / "summary.json").write_text(json.dumps({"verdict": "skipped", "report": None}))
    result = run_warmstart("report", str(work))
    assert result.returncode == 0, result.stderr
    assert (
        opened.read_text().strip()
        == (work / "runs" / "newer" / "gate" / "result" / HTML_FILE).resolve().as_uri()
    )

    missing = run_warmstart("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert "no gate report at" in missing.stderr and "Traceback" not in missing.stderr
