"""bench/bench_batch.py --quick runs end to end on the demo model and prints its table with numeric ratios."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_batch.py"
NUM = r"(\d+(?:\.\d+)?)"


def test_bench_batch_quick_prints_the_table_and_ratios():
    cmd = [sys.executable, str(SCRIPT), "--quick", "--n", "6", "--batch", "4", "--curve", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    assert [c[0] for c in cells] == ["1", "4"]
    for batch, row in zip((1, 4), cells, strict=True):
        cap_s, gen_s, ratio, cap_tps, gen_tps = (float(x) for x in row[1:6])
        assert min(cap_s, gen_s, cap_tps, gen_tps) > 0
        assert abs(ratio - cap_s / gen_s) <= 0.05 * ratio + 0.01  # the printed ratio is of the printed times
        assert int(row[6]) == batch  # the capture's forwards carried the whole batch (no per-sample fallback)
    assert re.search(rf"capture batch 4 / batch 1: {NUM}x \(target <= 0\.4\): (PASS|MISS)", out)
    for b in (1, 4):
        assert re.search(rf"capture / generate at batch {b}: {NUM}x \(target <= 1\.5\): (PASS|MISS)", out)
    for b in (1, 4):
        assert re.search(rf"--candidates 5 --rows output at batch {b}: {NUM} s, {NUM}x generate", out)
    assert re.search(rf"capture at batch 2: {NUM} s \({NUM}x batch 1, {NUM} tokens/s, 2 rows/forward", out)
    stages = re.search(r"where the time goes \(.*?\): (.*)", out)
    assert stages and all(
        s in stages.group(1) for s in ("decoding", "saliency pass", "tables", "Parquet parts")
    )
    # Greedy tokens: the toolkit at batch 4 and HF generate agree with batch 1 on every caption.
    assert "capture batch 4 vs batch 1 6/6, generate vs capture at batch 1 6/6, at batch 4 6/6" in out
