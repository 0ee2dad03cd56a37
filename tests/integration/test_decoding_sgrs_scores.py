"""SGRS thresholding another score of the family (`--sgrs-score`, `--sgrs-reject`): the decoder's candidate scores
are the SQL macros' scores (queries/_catalog.sql) for the same rows, and its accept / reject decisions are the
offline replay's (saliency_lab.analysis.calibration), in float64 on tiny models."""
# ruff: noqa: F811  (pytest fixtures imported from the fixture modules are redefined as parameters)

from __future__ import annotations

import json

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _decoding_fixtures import check_decisions, decoding_image, decoding_models, prepare  # noqa: F401
from _run_fixtures import tiny_llama, write_text_manifest  # noqa: F401

from saliency_lab.analysis.calibration import ReplayData, rejections
from saliency_lab.config import DecodingConfig, SGRSConfig
from saliency_lab.decoding import decode
from saliency_lab.saliency.reference import reference_rows
from saliency_lab.store.catalog import scan_schema
from saliency_lab.store.schema import SCHEMAS
from saliency_lab.store.sqlfiles import catalog_sql_path

ARCH = "llava"  # an image segment, so source_share = prompt + image differs from prompt_share


def _sql_scores(
    bundle, prep, rows: list[tuple[int, list[int], int]], layers: list[int], score: str
) -> list[float]:
    """`score` from the catalog macros (token_scores over a float64 saliency table) for each (step, prefix,
    candidate): per-layer segment sums of the per-prefix reference row, one sample per row."""
    o, seg = prep.n_input, prep.segments
    sal: dict[str, list] = {c: [] for c in SCHEMAS["saliency"].names}
    for i, (step, prefix, cand) in enumerate(rows):
        row = reference_rows(bundle, prep, prefix + [cand])[-1].double()  # [L, q + 1], q = o - 1 + step
        for layer in range(bundle.n_layers):
            s = row[layer]
            vals = {
                "sys_sum": s[seg["system"][0] : seg["system"][1]].sum(),
                "img_sum": s[seg["image"][0] : seg["image"][1]].sum(),
                "prompt_sum": s[seg["prompt"][0] : seg["prompt"][1]].sum(),
                "out_sum": s[o:].sum(),
                "prev": s[-1],
                "row_l2": torch.linalg.vector_norm(s),
                "attn_out_sum": torch.tensor(0.0),
            }
            for k, v in {"run_id": "r", "sample_id": f"d{i}", "step": step, "layer": layer, **vals}.items():
                sal[k].append(float(v) if isinstance(v, torch.Tensor) else v)
    con = duckdb.connect()
    for table in SCHEMAS:  # every view the macros name; saliency in float64
        con.register(f"_{table}", scan_schema(table).empty_table() if table != "saliency" else pa.table(sal))
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}")
    con.execute(f"CREATE VIEW runs AS SELECT 'r' AS run_id, {bundle.n_layers} AS n_layers")
    con.execute(catalog_sql_path().read_text(encoding="utf-8"))
    got = dict(con.execute(f"SELECT sample_id, {score} FROM token_scores(layers := {layers})").fetchall())
    return [got[f"d{i}"] for i in range(len(rows))]


@pytest.mark.parametrize(
    "score, reject, alpha", [("source_share", "low", 1.05), ("source_share", "high", 0.97)]
)
def test_decoder_scores_are_the_sql_scores_and_decisions_the_replay(
    score, reject, alpha, decoding_models, decoding_image
):
    bundle = decoding_models(ARCH)
    prep = prepare(bundle, ARCH, decoding_image)
    assert prep.segments["image"][1] > prep.segments["image"][0]
    sgrs = SGRSConfig(alpha=alpha, window=3, k=5, max_resample=3, score=score, reject=reject)
    res = decode(bundle, prep, DecodingConfig(max_new_tokens=8, strategy="sgrs", seed=5, sgrs=sgrs))
    check_decisions(res, sgrs)
    dc, tc = res.decisions, res.token_columns
    assert set(dc["score_name"]) == {score} and set(tc["sgrs_score_name"]) == {score}
    layers = res.stats["target_layers"]

    # 1. every scored draw (accepted, rejected or fallback) is the SQL macro's score of that row, to 1e-10
    idx = [i for i, s in enumerate(dc["step"]) if s >= 1]
    rows = [(dc["step"][i], res.output_ids[: dc["step"][i]], dc["token_id"][i]) for i in idx]
    sql = _sql_scores(bundle, prep, rows, layers, score)
    for i, ref in zip(idx, sql, strict=True):
        assert 0 < ref < 1 and abs(dc["score"][i] - ref) <= 1e-10 * ref
    # the score chosen is not out_mean's: the decoder really thresholds the other score
    assert all(
        abs(dc["score"][i] - v) > 1e-3
        for i, v in zip(idx, _sql_scores(bundle, prep, rows, layers, "out_mean"), strict=True)
    )

    # 2. the offline replay over the emitted tokens' SQL scores gives the decoder's tau at every step, rejects
    # exactly the emitted fallback tokens, and every draw's verdict against that tau is the decoder's
    n = len(res.output_ids)
    emitted = {
        dc["step"][i]: v for i, v in zip(idx, sql, strict=True) if dc["accepted"][i] or dc["fallback"][i]
    }
    toks = pl.DataFrame(
        {
            "run_id": ["r"] * n,
            "sample_id": ["s0"] * n,
            "step": list(range(n)),
            "token_id": res.output_ids,
            "score": [emitted.get(s) for s in range(n)],
            "label": [None] * n,
            "fallback": tc["fallback"],
        },
        schema_overrides={"score": pl.Float64, "label": pl.Int64},
    )
    tau, rejected = rejections(ReplayData.from_frames(toks), alpha, sgrs.window, reject=reject)
    np.testing.assert_allclose(tau, tc["sgrs_tau"], rtol=1e-10, atol=0)
    assert rejected.tolist() == tc["fallback"]
    verdicts = [
        (v < tau[dc["step"][i]]) if reject == "low" else (v > tau[dc["step"][i]])
        for i, v in zip(idx, sql, strict=True)
    ]
    decoder = [not dc["accepted"][i] for i in idx]
    assert verdicts == decoder
    assert 1 <= sum(decoder) < len(decoder)  # some draws rejected, some accepted: the comparison bites


def test_capture_prompt_share_on_a_text_model_records_the_score_and_replays(tmp_path, capsys, tiny_llama):
    """`capture --sgrs-score prompt_share --sgrs-reject high` on a text-only model (empty image segment): run.json
    and both tables name the score, and the catalog's replay query (replay_tokens, what `calibrate` reads) gives
    the decoder's tau and rejects exactly its fallback tokens."""
    from saliency_lab.cli import main
    from saliency_lab.store.catalog import open_catalog

    m = write_text_manifest(tmp_path / "m.jsonl", 2)
    base = [
        "capture",
        "--model",
        str(tiny_llama),
        "--data",
        str(m),
        "--out",
        str(tmp_path),
        "--quiet",
        "--max-new-tokens",
        "8",
        "--dtype",
        "float64",
        "--strategy",
        "sgrs",
        "--seed",
        "2",
    ]
    assert (
        main(
            base
            + [
                "--run-id",
                "ps",
                "--sgrs-score",
                "prompt_share",
                "--sgrs-reject",
                "high",
                "--sgrs-alpha",
                "0.98",
                "--sgrs-window",
                "2",
            ]
        )
        == 0
    )
    run = tmp_path / "ps"
    sgrs = json.loads((run / "run.json").read_text())["decoding"]["sgrs"]
    assert (sgrs["score"], sgrs["reject"], sgrs["alpha"]) == ("prompt_share", "high", 0.98)
    assert all(a == b for a, b in pq.read_table(run / "samples")["seg_image"].to_pylist())  # no image keys
    tokens = pq.read_table(run / "tokens").to_pandas().sort_values(["sample_id", "step"])
    decisions = pq.read_table(run / "decisions").to_pandas()
    assert set(tokens["sgrs_score_name"]) == {"prompt_share"} and set(decisions["score_name"]) == {
        "prompt_share"
    }
    assert tokens["fallback"].any() and not tokens["fallback"].all()
    assert ((decisions["score"] > 0) & (decisions["score"] < 1) | decisions["score"].isna()).all()

    # the replay's input query (what `calibrate` reads): prompt_share from the stored sums, null at step 0, and
    # the fallback flags; its tau is the decoder's and it rejects exactly the fallback tokens
    toks = open_catalog([run]).query("replay_tokens", {"score": "prompt_share"}).sort(["sample_id", "step"])
    assert toks["sample_id"].to_list() == tokens["sample_id"].tolist() and toks["score"][0] is None
    scored = (tokens["step"] >= 1).to_numpy()
    np.testing.assert_allclose(
        toks["score"].to_numpy()[scored], tokens["sgrs_score"].to_numpy()[scored], rtol=1e-5
    )
    assert toks["fallback"].to_list() == tokens["fallback"].tolist()
    tau, rejected = rejections(ReplayData.from_frames(toks), 0.98, 2, reject="high")
    np.testing.assert_allclose(tau, tokens["sgrs_tau"], rtol=1e-5)
    assert rejected.tolist() == tokens["fallback"].tolist()

    # one-line errors naming the flag and the allowed names; nothing written
    for flag, value, message in [
        ("--sgrs-score", "attn_out", "--sgrs-score 'attn_out': SGRS thresholds"),
        ("--sgrs-score", "step", "choose one of out_mean, prev, out_share"),
        ("--sgrs-score", "bogus", "source_share"),
        ("--sgrs-reject", "middle", "--sgrs-reject 'middle': choose one of low, high"),
    ]:
        capsys.readouterr()
        assert main(base + ["--run-id", "bad", flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "bad").exists()
