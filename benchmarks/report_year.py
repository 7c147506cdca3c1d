"""Benchmark: `minewatch report` of a year of quarterly demo scans (issue #8: under 20 s on the
2-core machine).

Scans ``configs/demo-year.yaml`` (the demo's territory and synthetic world over 2024Q1..2024Q4)
into ``--scan-dir`` unless a finished scan is already there (a rerun reuses every unit), then
times the report as the command line runs it: a fresh Python process running
``minewatch report SCAN --out DIR --pdf --overwrite`` (imports included), ``--repeat`` times.

    .venv/bin/python benchmarks/report_year.py [--scan-dir minewatch-demo-year] [--repeat 3]

Prints one JSON object: the scan's seconds (0 when reused), the report's wall seconds per
repeat, the best and the median, the periods, sites and the report's own timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_RUN_REPORT = """\
import sys
from minewatch.cli_report import report
sys.exit(report.main(sys.argv[1:], prog_name="minewatch report"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan-dir", type=Path, default=Path("minewatch-demo-year"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    scan_dir: Path = args.scan_dir

    scan_s = 0.0
    if not (scan_dir / "runs.sqlite").is_file():
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "minewatch",
                "-q",
                "scan",
                str(REPO / "configs" / "demo-year.yaml"),
                "--out",
                str(scan_dir),
            ],
            check=True,
        )
        scan_s = time.monotonic() - started

    walls: list[float] = []
    summary: dict = {}
    for _ in range(args.repeat):
        started = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _RUN_REPORT,
                str(scan_dir),
                "--out",
                str(scan_dir / "report"),
                "--pdf",
                "--overwrite",
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        walls.append(time.monotonic() - started)
        summary = json.loads(proc.stdout)
    print(
        json.dumps(
            {
                "scan_s": round(scan_s, 1),
                "report_wall_s": [round(w, 2) for w in walls],
                "report_best_s": round(min(walls), 2),
                "report_median_s": round(statistics.median(walls), 2),
                "report_inside_s": summary.get("seconds"),
                "periods": summary.get("periods"),
                "sites": summary.get("sites"),
                "files": len(summary.get("files", [])),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
