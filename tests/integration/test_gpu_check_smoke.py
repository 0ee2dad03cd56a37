"""bench/gpu_check.py runs end to end on CPU with a very small shape (CI never depends on a GPU)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def test_gpu_check_runs_on_cpu_with_a_tiny_shape():
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--tiny",
        "--device",
        "cpu",
        "--batches",
        "1,2",
        "--new",
        "4",
        "--max-pass-tokens",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "16 image tokens" in out and "bfloat16 on CPU" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    assert [c[0] for c in cells] == ["1", "2"]
    for batch, row in zip((1, 2), cells, strict=True):
        gen_tps, cap_tps, ratio, peak_gen, peak_cap, widest = (float(x) for x in row[1:])
        assert gen_tps > 0 and cap_tps > 0 and ratio > 0 and peak_gen > 0 and peak_cap > 0
        # Every forward of the capture at batch 2 carried both rows: the batched path ran, not the
        # sample-by-sample fallback capture_batch takes when a group fails.
        assert widest == batch
    assert "bf16 vs float32 saliency" in out and "--max-pass-tokens 2" in out
