"""Report size and build time: the demo's report and a 500-caption synthetic run with `--rows all` rows and
an image per sample (issue 16's closing note). Each build runs once, in this process, after one warm-up of
the Vega bundle (cached per process), so the times are the report's own work.

    python bench/bench_report.py                      # runs the demo (--no-report) in a temp folder first
    python bench/bench_report.py --demo DIR           # reuse a finished `saliency-lab demo --out DIR`
    python bench/bench_report.py --screenshots docs   # also save the summary / explorer PNGs of the demo report
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _synth_helpers():
    spec = importlib.util.spec_from_file_location(
        "_report_synth", ROOT / "tests" / "unit" / "_report_synth.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(runs: list[Path], out: Path, **kw) -> tuple[float, int, str]:
    from saliency_lab.report import ReportConfig, build_report

    t0 = time.perf_counter()
    path = build_report([str(r) for r in runs], out, ReportConfig(**kw))
    seconds = time.perf_counter() - t0
    html = path.read_text(encoding="utf-8")
    dropped = [line for line in html.split("\n") if "left out (embedded media budget" in line]
    return seconds, path.stat().st_size, dropped[0].strip() if dropped else "nothing dropped"


def demo_runs(folder: Path) -> list[Path]:
    names = ["greedy", "sample", "sgrs", "locore", "pope"]
    return [folder / "runs" / n for n in names if (folder / "runs" / n / "run.json").is_file()]


def screenshots(html: Path, out_dir: Path) -> None:
    from saliency_lab.report.cdp import Page

    with Page(width=1400, height=1000) as page:
        page.open(html)
        page.wait_for("document.getElementById('explorer-root').getAttribute('data-explorer-ready')")
        page.screenshot(out_dir / "report-summary.png")
        page.eval(
            "(function(){var t=Array.from(document.querySelectorAll('#explorer-list span.tok.hal'))"
            ".find(e => +e.dataset.step >= 2); t.setAttribute('data-pick','1'); return 1;})()"
        )
        page.click("#explorer-list span.tok[data-pick='1']")
        page.wait_for("!!document.querySelector('#explorer-detail canvas[data-drawn]')")
        page.screenshot(out_dir / "report-explorer.png", selector="#explorer", height=1150)
        errors = page.console_errors() + page.network_requests()
    print(f"screenshots -> {out_dir}/report-summary.png, report-explorer.png ({len(errors)} errors / loads)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default=None, help="a finished demo folder (default: run the demo first)")
    ap.add_argument("--n", type=int, default=500, help="synthetic captions (default 500)")
    ap.add_argument("--screenshots", default=None, help="save PNGs of the demo report here")
    args = ap.parse_args()
    from saliency_lab.report.assets import vega_bundle

    vega_bundle()  # warm the per-process cache so it is not charged to the first build
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(args.demo) if args.demo else Path(tmp) / "demo"
        if not args.demo:
            cli = "import sys; from saliency_lab.cli import main; sys.exit(main(sys.argv[1:]))"
            subprocess.run(
                [sys.executable, "-c", cli, "demo", "--out", str(demo), "--no-report"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        runs = demo_runs(demo)
        cal = demo / "calibration"
        sec, size, dropped = build(
            runs,
            Path(tmp) / "demo.html",
            calibration=str(cal) if (cal / "calibration.json").is_file() else None,
        )
        print(f"demo report ({len(runs)} runs): {size / 1e6:.2f} MB, built in {sec:.1f} s; {dropped}")
        if args.screenshots:
            screenshots(Path(tmp) / "demo.html", Path(args.screenshots))
        synth = _synth_helpers()
        t0 = time.perf_counter()
        run = synth.synthetic_run(
            Path(tmp) / "synth", "synth500", rows="all", images=576, n_samples=args.n, max_steps=24
        )
        print(
            f"synthetic run: {args.n} captions, 576 image patches, rows all ({time.perf_counter() - t0:.1f} s "
            "to write)"
        )
        sec, size, dropped = build([run], Path(tmp) / "synth.html")
        print(f"synthetic report: {size / 1e6:.2f} MB, built in {sec:.1f} s; {dropped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
