"""One manifest captured three ways (baseline, LocoRE, SGRS + LocoRE) through `saliency_lab.run.capture`:
the runs differ where they should, SGRS decisions are consistent across tables, and the report puts them side by
side."""

from __future__ import annotations

import json

import duckdb
import pytest
from _run_fixtures import tiny_llama, write_text_manifest  # noqa: F401

from saliency_lab.config import CaptureConfig, DecodingConfig, LocoREConfig, ModelConfig, SGRSConfig
from saliency_lab.run import capture

N_SAMPLES, MAX_NEW = 3, 10


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, tiny_llama):  # noqa: F811
    root = tmp_path_factory.mktemp("compare")
    manifest = write_text_manifest(root / "m.jsonl", N_SAMPLES)
    locore = LocoREConfig(beta=2.0, window=5)
    configs = {
        "baseline": DecodingConfig(max_new_tokens=MAX_NEW),
        "locore": DecodingConfig(max_new_tokens=MAX_NEW, locore=locore),
        "sgrs_locore": DecodingConfig(max_new_tokens=MAX_NEW, strategy="sgrs", seed=7, locore=locore,
                                      sgrs=SGRSConfig(alpha=0.95, window=3, k=5, max_resample=3)),
    }
    runs = {}
    for name, dec in configs.items():
        cfg = CaptureConfig(model=ModelConfig(str(tiny_llama)), data=str(manifest), out=str(root / "runs"),
                            run_id=name, decoding=dec, quiet=True)
        res = capture(cfg)
        assert (res.ok, res.error) == (N_SAMPLES, 0)
        runs[name] = res.run_dir
    return runs


def _tokens(run_dir) -> dict[str, list[dict]]:
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{run_dir}/tokens/*/*.parquet') ORDER BY sample_id, step")
    out: dict[str, list[dict]] = {}
    for r in rows.fetchall():
        d = dict(zip(rows.columns, r, strict=True))
        out.setdefault(d["sample_id"], []).append(d)
    return out


def test_runs_record_their_decoding_and_differ_as_expected(three_runs):
    info = {k: json.loads((v / "run.json").read_text()) for k, v in three_runs.items()}
    assert info["baseline"]["decoding"]["locore"]["beta"] == 0.0
    assert info["locore"]["decoding"]["locore"]["beta"] == 2.0
    assert info["sgrs_locore"]["decoding"]["strategy"] == "sgrs"
    assert info["sgrs_locore"]["decoding"]["sgrs"]["alpha"] == 0.95
    base, loco, sgrs = (_tokens(three_runs[k]) for k in ("baseline", "locore", "sgrs_locore"))
    ids = {k: {s: [t["token_id"] for t in v] for s, v in d.items()} for k, d in
           (("baseline", base), ("locore", loco), ("sgrs", sgrs))}
    for s in ids["baseline"]:
        # LocoRE has no key to boost before output step 2
        assert ids["locore"][s][:2] == ids["baseline"][s][:2]
    assert ids["locore"] != ids["baseline"] and ids["sgrs"] != ids["locore"]
    # decision columns are null unless the run decoded with SGRS
    for d in (base, loco):
        assert all(t["accepted"] is None and t["sgrs_score"] is None for v in d.values() for t in v)
    assert not (three_runs["baseline"] / "decisions").exists()


def test_sgrs_decisions_agree_with_tokens_and_saliency_tables(three_runs):
    run = three_runs["sgrs_locore"]
    con = duckdb.connect()
    con.sql(f"CREATE VIEW t AS SELECT * FROM read_parquet('{run}/tokens/*/*.parquet')")
    con.sql(f"CREATE VIEW d AS SELECT * FROM read_parquet('{run}/decisions/*/*.parquet')")
    con.sql(f"CREATE VIEW s AS SELECT * FROM read_parquet('{run}/saliency/*/*.parquet')")
    # exactly one emitted candidate per step, and it is the token written to the tokens table
    bad = con.sql("""
        SELECT t.sample_id, t.step FROM t LEFT JOIN d
          ON d.sample_id = t.sample_id AND d.step = t.step AND (d.accepted OR d.fallback)
        GROUP BY t.sample_id, t.step, t.token_id
        HAVING count(d.token_id) <> 1 OR any_value(d.token_id) <> t.token_id""").fetchall()
    assert bad == []
    agg = con.sql("""
        SELECT t.sample_id, t.step, t.accepted, t.fallback, t.n_rejected, t.sgrs_tau,
               count(*) AS n_draws, sum(CASE WHEN d.accepted THEN 0 ELSE 1 END) AS n_not_accepted,
               bool_or(d.accepted) AS any_acc, bool_or(d.fallback) AS any_fb, max(d.tau) AS tau
        FROM t JOIN d USING (sample_id, step)
        GROUP BY ALL""").fetchall()
    assert len(agg) == con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    for _sid, _step, acc, fb, n_rej, tau_t, _n, n_not, any_acc, any_fb, tau_d in agg:
        assert acc == any_acc and fb == any_fb and acc != fb
        assert n_rej == n_not and tau_t == tau_d
    assert any(r[3] for r in agg) and any(r[4] > 0 for r in agg)  # the threshold did reject something
    # the online SGRS score equals the score from the stored saliency (Eq. 6 over the upper half)
    n_layers = json.loads((run / "run.json").read_text())["model"]["n_layers"]
    rows = con.sql(f"""
        SELECT t.sgrs_score, avg(s.out_sum / (s.row_l2 * s.step)) AS from_saliency
        FROM t JOIN s USING (sample_id, step)
        WHERE s.layer >= {n_layers // 2} AND t.step >= 1
        GROUP BY t.sample_id, t.step, t.sgrs_score""").fetchall()
    assert len(rows) > 0
    for online, stored in rows:
        assert online == pytest.approx(stored, rel=2e-4)
    assert con.execute("SELECT count(*) FROM t WHERE step = 0 AND sgrs_score IS NOT NULL").fetchall() == [(0,)]


def test_report_compares_the_three_runs(three_runs, tmp_path):
    from saliency_lab.report.build import build_report
    from saliency_lab.report.config import ReportConfig

    out = build_report([str(p) for p in three_runs.values()], tmp_path / "cmp.html",
                       ReportConfig(compute_calibration=False))
    html = out.read_text(encoding="utf-8")
    for name in three_runs:
        assert name in html
