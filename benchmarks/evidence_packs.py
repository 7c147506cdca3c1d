"""Benchmark: evidence packs for every alert of the demo (issue #20: under 10 s on 2 cores; one
site's pack under 5 MB).

Runs ``minewatch demo --out DEMO`` unless a finished demo is already there (a rerun reuses every
unit), then times, ``--repeat`` times, the command line as a user runs it: a fresh Python process
running ``minewatch alerts evidence-pack DEMO --all --sign KEY --to DIR --overwrite`` (imports
included), once with folders and once with ``--zip``; then the same packs in this process
(without the command's start-up) and the start-up alone (``minewatch --help``). Prints one JSON
object: the wall seconds per repeat (best, median), the number of packs, and the sizes of the
packs (largest, median), and checks that two runs give byte-identical packs.

    .venv/bin/python benchmarks/evidence_packs.py [--demo-dir minewatch-demo] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _minewatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minewatch", *args], check=True, capture_output=True, text=True
    )


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=Path("minewatch-demo"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    demo: Path = args.demo_dir
    if not (demo / "runs.sqlite").is_file() or not (demo / "scenes.json").is_file():
        _minewatch("-q", "demo", "--out", str(demo))
    work = Path(tempfile.mkdtemp(prefix="minewatch-packs-"))
    key = work / "bench.key"
    _minewatch("alerts", "keygen", str(key))
    result: dict = {}
    for mode, extra in (("folders", []), ("zip", ["--zip"])):
        walls = []
        written: list[dict] = []
        for i in range(args.repeat):
            started = time.monotonic()
            done = _minewatch(
                "alerts", "evidence-pack", str(demo), "--all", "--sign", str(key),
                "--to", str(work / f"{mode}-{i}"), "--overwrite", "--json", *extra,
            )
            walls.append(time.monotonic() - started)
            written = json.loads(done.stdout)
        sizes = [w["size_bytes"] for w in written]
        result[mode] = {
            "packs": len(written),
            "wall_s": [round(w, 2) for w in walls],
            "best_s": round(min(walls), 2),
            "median_s": round(statistics.median(walls), 2),
            "largest_pack_mb": round(max(sizes) / 1e6, 3),
            "median_pack_mb": round(statistics.median(sizes) / 1e6, 3),
        }
    # The same work in this process, without the command line's start-up (importing torch).
    from detection.alerts import write_evidence_packs
    from detection.runs import RunStore

    inproc = []
    for i in range(args.repeat):
        started = time.monotonic()
        write_evidence_packs(demo, None, work / f"inproc-{i}", signing_key=key,
                             store=RunStore.open_existing(demo))
        inproc.append(time.monotonic() - started)
    result["in_process"] = {
        "wall_s": [round(w, 2) for w in inproc],
        "best_s": round(min(inproc), 2),
        "median_s": round(statistics.median(inproc), 2),
    }
    started = time.monotonic()
    _minewatch("--help")
    result["cli_startup_s"] = round(time.monotonic() - started, 2)
    if args.repeat >= 2:
        result["folders"]["byte_identical_across_runs"] = _digest(work / "folders-0") == _digest(
            work / "folders-1"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
