"""The "Statistical methods" section is written from the config alone (issue 12)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import yaml

from cxrbs.report.methods import statistical_methods_html

ROOT = Path(__file__).resolve().parents[1]


def test_methods_section_names_endpoint_tests_and_selection() -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    text = statistical_methods_html(config)
    HTMLParser().feed(text)
    for needle in ("Primary endpoint", "DeLong", "Holm", "sign-flip", "0.125",
                   "Nadeau–Bengio", "McNemar", "Wilcoxon signed-rank", "validation pairs only",
                   "heldout_test", "seed 42" if config["seed"] == 42 else "seed"):
        assert needle in text, needle
    assert config["cls"]["primary_endpoint"] in text


def test_methods_section_follows_the_config() -> None:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["cls"]["folds"] = 3
    config["cls"].pop("repeats", None)
    text = statistical_methods_html(config)
    assert "smallest attainable two-sided p with 3 folds is 0.25" in text
    assert "not estimated in this run" in text and "No control arm" in text
    config["cls"].update(repeats=3, variants=["baseline", "bone_suppressed", "control"])
    text = statistical_methods_html(config)
    assert "repeated with 3 seeds" in text and "<b>control</b> arm" in text
