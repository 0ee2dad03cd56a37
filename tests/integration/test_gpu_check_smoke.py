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
    assert [r.split("|")[1].strip() for r in rows] == ["1", "2"]
    assert "n/a (no batched capture)" in rows[1]
    assert float(rows[0].split("|")[3]) > 0  # capture tokens/s at batch 1
    assert "bf16 vs float32 saliency" in out and "--max-pass-tokens 2" in out
