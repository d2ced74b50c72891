"""Family-wise error and power of the primary endpoint when fitted models vary from seed to seed.

Issue 22: DeLong's test treats the fitted classifiers as fixed. A fine-tuned model's AUC moves
from seed to seed (typically by 0.01–0.02), and DeLong does not see that, so the primary family
(one ΔAUC per TB set, Holm across sets) rejects too often when the two arms are equally good.
This script simulates the study's design at the sizes of Shenzhen (336 TB / 326 normal) and
Montgomery (58 / 80), 4 patient-level folds, and compares

* old, 1 seed:      DeLong on one fine-tuning run per fold and arm;
* old, mean of R:   DeLong on the predictions averaged over R seeds (the pre-issue-22 primary);
* new, R seeds:     ``cxrbs.cls.stats.delong_seed_test(seed_variance="excess")``: the same
                    estimand, variance DeLong + the between-seed variance of the per-repeat ΔAUC
                    beyond the per-image noise DeLong already counts, / R; t, Satterthwaite df;
* new full, R:      the same with the whole between-seed variance added (seed_variance="full",
                    the workflow's default), which counts per-image seed noise twice:
                    conservative.

Simulation: every image has a shared difficulty (both arms see it) and every fitted model
(arm x seed x fold) its own per-image noise and its own skill shift, scaled so that one fold
model's AUC has SD ``tau`` over seeds from the skill shift alone (``--tau``; 0 reproduces tests/test_stats_fwer.py's setting). Under
H0 both arms have the same expected skill; for power, the bone-suppressed arm's expected AUC is
higher by ``--effect`` (default 0.03, the effect the study claims). Base AUC about 0.9.

Run (one core, about 2 minutes at the default size):

    taskset -c 0 .venv/bin/python benchmarks/fwer_seed_noise.py --runs 400

It prints one table: per design and tau, the family-wise false-positive rate under H0 and, with
the effect, the power per TB set and the chance of "significant on both sets".
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
from scipy import stats as sps

from cxrbs.cls.stats import delong_seed_test, delong_test, detectable_auc_difference
from cxrbs.stats import holm

SIZES = {"shenzhen": (336, 326), "montgomery": (58, 80)}
FOLDS = 4
SIGNAL = 2.2          # class separation: AUC = Phi(2.2 / sqrt(2 * 1.49)) = 0.90
NOISE = 0.7           # per-model, per-image noise (shared difficulty has SD 1)
ALPHA = 0.05
_S = np.sqrt(2 * (1 + NOISE**2))
#: d AUC / d (separation) of the binormal model at SIGNAL: turns an AUC SD into a skill SD.
_SLOPE = float(sps.norm.pdf(SIGNAL / _S) / _S)


def _arm_scores(rng: np.random.Generator, y: np.ndarray, fold: np.ndarray, shared: np.ndarray,
                tau: float, shift: float) -> np.ndarray:
    """One arm, one seed: a model per fold with its own skill deviation and per-image noise."""
    skill = SIGNAL + shift + rng.normal(0, tau / _SLOPE, FOLDS)[fold] if tau > 0 else (
        np.full(y.size, SIGNAL + shift))
    return skill * y + shared + NOISE * rng.normal(size=y.size)


def _one_set(rng: np.random.Generator, n_pos: int, n_neg: int, tau: float, effect: float,
             max_r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = n_pos + n_neg
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    fold = rng.permutation(np.arange(n) % FOLDS)
    shared = rng.normal(size=n)
    base = np.stack([_arm_scores(rng, y, fold, shared, tau, 0.0) for _ in range(max_r)])
    bs = np.stack([_arm_scores(rng, y, fold, shared, tau, effect / _SLOPE) for _ in range(max_r)])
    return y, base, bs


def simulate(runs: int, tau: float, effect: float, repeats: tuple[int, ...], seed: int,
             ) -> dict[str, np.ndarray]:
    """p-values per design (rows: runs, columns: TB sets)."""
    rng = np.random.default_rng(seed)
    max_r = max(repeats)
    designs = (["old, 1 seed"] + [f"old, mean of {r}" for r in repeats]
               + [f"new, {r} seeds" for r in repeats] + [f"new full, {r} seeds" for r in repeats])
    out = {d: np.full((runs, len(SIZES)), np.nan) for d in designs}
    for i in range(runs):
        for j, (n_pos, n_neg) in enumerate(SIZES.values()):
            y, base, bs = _one_set(rng, n_pos, n_neg, tau, effect, max_r)
            out["old, 1 seed"][i, j] = delong_test(y, bs[0], base[0])["p_value"]
            for r in repeats:
                out[f"old, mean of {r}"][i, j] = delong_test(
                    y, bs[:r].mean(0), base[:r].mean(0))["p_value"]
                out[f"new, {r} seeds"][i, j] = delong_seed_test(
                    y, bs[:r], base[:r], seed_variance="excess")["p_value"]
                out[f"new full, {r} seeds"][i, j] = delong_seed_test(
                    y, bs[:r], base[:r], seed_variance="full")["p_value"]
    return out


def _fwer(p: np.ndarray) -> float:
    return float(np.mean([np.nanmin(holm(row)) < ALPHA for row in p]))


def _power(p: np.ndarray) -> tuple[float, float, float]:
    adj = np.stack([holm(row) for row in p])
    hit = adj < ALPHA
    return float(hit[:, 0].mean()), float(hit[:, 1].mean()), float(hit.all(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--tau", type=float, nargs="+", default=[0.0, 0.01, 0.02])
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--effect", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()
    gc.collect = lambda *a: 0  # statsmodels' Holm calls gc.collect() each time; values unchanged
    t0 = time.time()
    print(f"{args.runs} simulated studies per cell; sizes {SIZES}; {FOLDS} folds; "
          f"base AUC {sps.norm.cdf(SIGNAL / _S):.3f}; Holm across the 2 TB sets, alpha {ALPHA}")
    print(f"{'design':<20} {'tau':>5} {'FWER (H0)':>10} {'power SZ':>9} {'power MC':>9} "
          f"{'both':>6}")
    for tau in args.tau:
        null = simulate(args.runs, tau, 0.0, tuple(args.repeats), args.seed)
        alt = simulate(args.runs, tau, args.effect, tuple(args.repeats), args.seed + 1)
        for design in null:
            sz, mc, both = _power(alt[design])
            print(f"{design:<20} {tau:>5.3f} {_fwer(null[design]):>10.1%} {sz:>9.1%} "
                  f"{mc:>9.1%} {both:>6.1%}")
    print("\nsmallest detectable ΔAUC, 80% power, two-sided alpha 0.05 (Hanley–McNeil, AUC 0.9, "
          "arm correlation 0.5):")
    for name, (n_pos, n_neg) in SIZES.items():
        cells = [f"tau {tau:.2f}, R {r}: "
                 f"{detectable_auc_difference(n_pos, n_neg, auc=0.9, correlation=0.5, model_sd=tau, repeats=r):.3f}"
                 for tau in args.tau for r in (1, *args.repeats)]
        print(f"  {name}: " + "; ".join(cells))
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
