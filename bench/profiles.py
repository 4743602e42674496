"""`python -m bench --profile`: where the time goes in the slow parts, as text for RESULTS.md.

* the pipeline's cold sync (pr-shaped directory) and the large-listing run: py-spy samples the execution's
  process (attached after moto's start-up), summarised by area and by function;
* the analytics child: cProfile, and -X importtime of its imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .contenders import Pipeline
from .processes import kill_with_parent
from .source import CONTACT, populate_many_files, populate_pr_directory, population_url

_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^():]*)(?::\d+)?\)$")
AREAS = (
    ("moto Step Functions", "moto/stepfunctions"),
    ("moto (other)", "moto/"),
    ("botocore / boto3 / s3transfer", ("botocore/", "boto3/", "s3transfer/")),
    ("urllib3 / http.client / socket / ssl", ("urllib3/", "http/client", "socket.py", "ssl.py", "http/server", "socketserver")),
    ("bls_pipeline (the Lambda code)", "bls_pipeline/"),
    ("local_runner (the engine)", "local_runner/"),
    ("aws_lambda_powertools", "aws_lambda_powertools/"),
    ("json / re / copy / stdlib data", ("json/", "re/", "copy.py", "decimal", "uuid.py", "datetime")),
    ("threading / queue / concurrent", ("threading.py", "queue.py", "concurrent/")),
    ("import machinery", ("<frozen importlib", "importlib/")),
)


def _area(path: str) -> str:
    for name, markers in AREAS:
        for marker in (markers,) if isinstance(markers, str) else markers:
            if marker in path:
                return name
    return "other"


PROJECT = Path(__file__).resolve().parent.parent
# The code folder first on the path, as Lambda has it in /var/task (not through the editable install's finder).
LAMBDA_LAYOUT = {**os.environ, "PYTHONPATH": str(PROJECT / "functions")}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["path"]
    for anchor in ("site-packages/", "functions/", f"{PROJECT}/", "lib/python3."):
        if anchor in path:
            path = path.split(anchor, 1)[1]
            break
    return f"{match['function']} ({path})"


def summarize_pyspy(raw: str, top: int = 15) -> str:
    """py-spy's raw (collapsed) stacks -> samples by area of the innermost frame, by innermost function, and by
    function anywhere on the stack (project and moto frames only)."""
    by_area: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        leaf = frames[-1]
        match = _FRAME.match(leaf)
        by_area[_area(match["path"] if match else leaf)] += samples
        own[_short(leaf)] += samples
        for frame in {_short(f) for f in frames}:
            if any(m in frame for m in ("bls_pipeline/", "local_runner/", "moto/stepfunctions", "moto/awslambda", "moto/s3")):
                inclusive[frame] += samples
    if not total:
        return "no samples"
    lines = [f"{total} CPU samples (py-spy, idle threads excluded)", "", "by area of the innermost frame:"]
    lines += [f"  {n / total:6.1%}  {area}" for area, n in by_area.most_common()]
    lines += ["", "innermost functions:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", "on the stack (project and moto frames):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def profile_pipeline_run(pipeline: Pipeline, bucket: str, workdir: Path, label: str) -> str:
    settings = {
        "contact_email": CONTACT, "source_url": pipeline.source.url, "population_url": population_url(pipeline.source),
        "concurrency": pipeline.concurrency, "bucket": bucket, "s3_endpoint": pipeline.destination.url,
        "timeout": pipeline.timeout, "pause_for_profiler": 1.0,
    }
    raw_path = workdir / f"pyspy-{label}.txt"
    child = subprocess.Popen([sys.executable, "-m", "bench.pipeline_run", json.dumps(settings)], cwd=PROJECT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=kill_with_parent)
    try:
        for line in child.stderr:
            if line.startswith("READY"):
                break
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(child.pid),
                                "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(raw_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=kill_with_parent)
        out, _ = child.communicate(timeout=pipeline.timeout)
        spy.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    result = json.loads(out)
    header = (f"execution {result['status']} in {result['seconds']:.1f} s; seconds per state: "
              + ", ".join(f"{k} {v:.1f}" for k, v in result["state_seconds"].items() if v >= 0.05))
    raw = raw_path.read_text() if raw_path.exists() else ""
    return header + "\n\n" + summarize_pyspy(raw)


def profile_analytics(data: Path, population: Path) -> str:
    stats = subprocess.run(
        [sys.executable, "-c", _ANALYTICS_PROFILE, str(data), str(population)],
        capture_output=True, text=True, cwd=PROJECT, timeout=600, preexec_fn=kill_with_parent, env=LAMBDA_LAYOUT,
    )
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import bls_pipeline.analytics"],
        capture_output=True, text=True, cwd=PROJECT, timeout=120, preexec_fn=kill_with_parent, env=LAMBDA_LAYOUT,
    )
    heavy = sorted(
        ((int(m[2]) / 1000, m[4]) for m in re.finditer(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", imports.stderr)
         if len(m[3]) <= 4),
        reverse=True,
    )[:8]
    return (stats.stdout.strip() + "\n\nimports of bls_pipeline.analytics (cumulative ms, outermost levels):\n"
            + "\n".join(f"  {ms:7.1f}  {name}" for ms, name in heavy))


_ANALYTICS_PROFILE = """
import cProfile, io, pstats, sys
profile = cProfile.Profile()
profile.enable()
from bls_pipeline.analytics import load_reports_from_files
load_reports_from_files(sys.argv[1], sys.argv[2])
profile.disable()
out = io.StringIO()
pstats.Stats(profile, stream=out).sort_stats('tottime').print_stats(12)
text = out.getvalue()
print(text[text.index('ncalls'):] if 'ncalls' in text else text)
"""


def collect(source, destination, workdir: Path, sizes: dict, args) -> dict[str, str]:
    profiles: dict[str, str] = {}
    pipeline = Pipeline(source, destination, args.concurrency, args.timeout)

    populate_pr_directory(source, sizes["large_mib"] * 1024 * 1024)
    bucket = destination.fresh_bucket("bench-profile")
    pipeline.prepare(bucket)
    profiles["pipeline, cold sync of the pr-shaped directory"] = profile_pipeline_run(pipeline, bucket, workdir, "cold")

    saved_latency = source.latency
    source.latency = args.many_latency
    count = min(sizes["many_files"], 1000)
    populate_many_files(source, count)
    bucket = destination.fresh_bucket("bench-profile-many")
    pipeline.prepare(bucket)
    profiles[f"pipeline, cold sync of {count:,} small files"] = profile_pipeline_run(pipeline, bucket, workdir, "many")
    source.latency = saved_latency

    data = workdir / "pr.data.0.Current"
    if not data.exists():
        from .source import REAL_CURRENT, pr_data_file

        data.write_bytes(REAL_CURRENT.read_bytes() if REAL_CURRENT.exists() else pr_data_file())
    population = workdir / "population.json"
    if not population.exists():
        from .source import POPULATION_ANSWER

        population.write_bytes(POPULATION_ANSWER)
    profiles["analytics (pipeline implementation), cProfile by own time"] = profile_analytics(data, population)
    return profiles
