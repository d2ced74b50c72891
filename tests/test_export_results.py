"""A run's answer kept in the repository (issue 26): predictions gathered from every fold and
repeat, the headline recomputed from them alone; and the committed docs/results/ (when present)
recomputes to the numbers it lists."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrbs.core.errors import CxrbsError
from cxrbs.report.export import export_run, gather_predictions, headline

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / "docs" / "results"


def _fake_run(root: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    for variant in ("baseline", "bone_suppressed"):
        for repeat in (0, 1):
            for fold in (0, 1):
                part = np.arange(40)[fold::2]
                sub = "" if repeat == 0 else f"repeat{repeat}/"
                d = root / "results/cls/shenzhen" / variant / f"{sub}fold{fold}"
                d.mkdir(parents=True)
                rows = []
                for model in ("deep", "hog"):
                    p = np.clip(0.3 * y[part] + rng.uniform(0, 0.8, part.size), 0, 1)
                    rows.append(pd.DataFrame({
                        "image": [f"img{i}" for i in part], "patient": [str(i) for i in part],
                        "label": y[part], "probability": p, "fold": fold, "variant": variant,
                        "dataset": "shenzhen", "model": model}))
                pd.concat(rows).to_csv(d / "predictions.csv", index=False)
    (root / "results/cls/comparison.csv").write_text("dataset\nshenzhen\n")


def test_headline_is_recomputed_from_the_predictions(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    files = export_run(tmp_path, tmp_path / "out")
    assert {f.name for f in files} == {"comparison.csv", "predictions.csv", "headline.csv"}
    preds = pd.read_csv(tmp_path / "out/predictions.csv")
    assert len(preds) == 2 * 2 * 2 * 40 and set(preds["repeat"]) == {0, 1}
    head = pd.read_csv(tmp_path / "out/headline.csv")
    deep = preds[preds["model"] == "deep"]
    for r in head.itertuples():
        g = deep[deep["variant"] == r.arm].groupby("image").agg(
            label=("label", "first"), probability=("probability", "mean"))
        assert r.auc == pytest.approx(roc_auc_score(g["label"], g["probability"]))
        assert r.ci_low < r.auc < r.ci_high and r.repeats == 2
    with pytest.raises(CxrbsError, match="no fine-tuning predictions"):
        gather_predictions(tmp_path / "nothing")


@pytest.mark.skipif(not (KEPT / "predictions.csv").is_file(), reason="no kept run in docs/results")
def test_kept_run_recomputes_to_its_headline_and_the_readme() -> None:
    preds = pd.read_csv(KEPT / "predictions.csv", dtype={"image": str, "patient": str})
    kept = pd.read_csv(KEPT / "headline.csv")
    again = headline(preds)
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), again.reset_index(drop=True),
                                  check_dtype=False)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for r in again.itertuples():
        assert f"{r.auc:.3f}" in readme, (r.dataset, r.arm, r.auc)


def test_exported_json_keeps_no_path_of_the_run_machine(tmp_path: Path) -> None:
    _fake_run(tmp_path)
    best = tmp_path / "results/bs/best.json"
    best.parent.mkdir(parents=True, exist_ok=True)
    card = tmp_path / "src/cxrbs/bundled/m.md"
    best.write_text(json.dumps({"arch": "pretrained", "pretrained_model": {"card": str(card)}}))
    files = export_run(tmp_path, tmp_path / "out")
    assert tmp_path / "out/best.json" in files
    kept = json.loads((tmp_path / "out/best.json").read_text())
    assert kept["pretrained_model"]["card"] == "src/cxrbs/bundled/m.md"


def test_report_figures_are_reencoded_smaller_and_the_limit_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from cxrbs.report import export

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot(np.arange(50), np.sin(np.arange(50) / 5.0), color="tab:orange")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = buf.getvalue()
    html = f'<p>x</p><img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    slim = export.slim_report(html)
    assert slim.startswith("<p>x</p><img src=") and len(slim) < len(html)
    data = base64.b64decode(slim.split("base64,")[1].split('"')[0])
    with Image.open(io.BytesIO(data)) as small, Image.open(io.BytesIO(png)) as big:
        assert small.size == big.size
    _fake_run(tmp_path)
    monkeypatch.setattr(export, "MAX_BYTES", 100)
    with pytest.raises(CxrbsError, match="nothing was written"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
