"""bench/bench_loss_precision.py runs on the demo model and shows what the loss-gradient rule is for: with it,
float32 saliency of the same tokens stays within 1e-4 of float64; with the usual formulas it does not."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_loss_precision.py"


def test_bench_loss_precision_table():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--n", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[1] in ("toolkit", "usual"):
            rows[(cells[0], cells[1])] = [float(x) for x in cells[2:]]
    assert set(rows) == {(w, r) for w in ("capture pass", "decoding time") for r in ("toolkit", "usual")}
    for where in ("capture pass", "decoding time"):
        assert rows[(where, "toolkit")][2] < 1e-4  # max relative error, float32 vs float64
        assert rows[(where, "usual")][2] > 1e-2  # the demo model's confident tokens: rounding dominates
