"""Which token scores separate CHAIR-hallucinated object tokens from correct ones, with position controlled.

A stopgap until the full score family and position-controlled AUROC land in `saliency-lab analyze`: for the
first subtoken of every labelled mention in the given runs, the AUROC (low score flags hallucination, so
> 0.5 means hallucinated tokens score lower, as the paper claims) of out_mean, normalized prev, the
attention baselines, the prompt share and output share of raw saliency, and of the step itself (the position
confound); pooled, and within step windows (pairs compared only inside the same window of `--window` steps,
weighted by pairs). 95% intervals from a bootstrap over samples.

    python bench/real_auroc.py saliency-lab-demo-text/runs/greedy [more runs ...] [--window 8]
"""

from __future__ import annotations

import argparse

import numpy as np

SCORES = ("out_mean", "prev", "attn_out", "lookback_ratio", "prompt_share", "out_share", "neg_step")


def auroc(y: np.ndarray, x: np.ndarray) -> tuple[float, int]:
    """P(correct > hallucinated) + ties / 2, and the number of pairs."""
    h, c = x[y == 1], x[y == 0]
    if not len(h) or not len(c):
        return float("nan"), 0
    gt = (c[:, None] > h[None, :]).sum() + 0.5 * (c[:, None] == h[None, :]).sum()
    return float(gt / (len(h) * len(c))), len(h) * len(c)


def windowed(y: np.ndarray, x: np.ndarray, step: np.ndarray, window: int) -> float:
    num = den = 0.0
    for w in np.unique(step // window):
        a, n = auroc(y[step // window == w], x[step // window == w])
        if n:
            num, den = num + a * n, den + n
    return num / den if den else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--labels", default="chair")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--n-boot", type=int, default=300)
    args = ap.parse_args()

    import polars as pl

    from saliency_lab.store.catalog import open_catalog

    with open_catalog(args.runs) as cat:
        tok = cat.query("labeled_tokens", {"labels": args.labels}).filter(pl.col("subtoken") == 0)
        shares = cat.query("labeled_shares", {"labels": args.labels})
    df = tok.join(
        shares.select("run_id", "sample_id", "step", "prompt_share", "out_share"),
        on=["run_id", "sample_id", "step"],
    )
    df = df.filter(df["out_mean"].is_not_null())  # step 0 has no prior output
    y = df["label"].to_numpy().astype(int)
    step = df["step"].to_numpy()
    cols = {s: (-step.astype(float) if s == "neg_step" else df[s].to_numpy().astype(float)) for s in SCORES}
    groups = (df["run_id"] + "/" + df["sample_id"]).to_numpy()
    ids = np.unique(groups)
    rows_of = {g: np.flatnonzero(groups == g) for g in ids}
    rng = np.random.default_rng(0)
    boots = [np.concatenate([rows_of[g] for g in rng.choice(ids, len(ids))]) for _ in range(args.n_boot)]
    print(
        f"{len(df)} mentions (first subtokens, step >= 1): {int(y.sum())} hallucinated, {int((1 - y).sum())} "
        f"correct, {len(ids)} samples; AUROC > 0.5: hallucinated tokens score lower"
    )
    print(
        f"{'score':<15}{'pooled':>8}  {'95% CI':<16}{'within ' + str(args.window) + '-step windows':>26}  95% CI"
    )
    for s, x in cols.items():
        ok = ~np.isnan(x)
        pooled = auroc(y[ok], x[ok])[0]
        within = windowed(y[ok], x[ok], step[ok], args.window)
        bp, bw = [], []
        for b in boots:
            b = b[ok[b]]
            bp.append(auroc(y[b], x[b])[0])
            bw.append(windowed(y[b], x[b], step[b], args.window))
        lo, hi = np.nanpercentile(bp, [2.5, 97.5])
        wlo, whi = np.nanpercentile(bw, [2.5, 97.5])
        print(f"{s:<15}{pooled:>8.3f}  [{lo:.3f}, {hi:.3f}]{within:>20.3f}        [{wlo:.3f}, {whi:.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
