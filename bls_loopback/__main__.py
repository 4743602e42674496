"""`python -m bls_loopback` (`make serve`): serve a BLS-like time.series tree and the population API on 127.0.0.1."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
from pathlib import Path

from .population import POPULATION_PATH, population_json
from .sample import sample_pr_files, sample_survey_files
from .server import BlsTree


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bls_loopback", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--directory", type=Path, default=None,
                        help="serve the files of this directory as one survey (--survey), or, if it holds "
                        "sub-directories, each of them as a survey of its name (default: generated samples of pr and "
                        "ce)")
    parser.add_argument("--survey", default="pr",
                        help="the survey name of --directory's files in the URL (default: pr)")
    parser.add_argument("--port", type=int, default=8321, help="port on 127.0.0.1 (default: 8321; 0: any free one)")
    parser.add_argument("--max-requests-per-second", type=float, default=1.0,
                        help="block (HTTP 403) a client that asks more often, as BLS does (default: 1; 0: never)")
    return parser


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = BlsTree(port=args.port, max_requests_per_second=args.max_requests_per_second or None)
    if args.directory is None:
        for name, body in sample_pr_files().items():
            server.survey("pr").put(name, body)
        for name, body in sample_survey_files("ce").items():
            server.survey("ce").put(name, body)
        what = "generated samples of pr and ce"
    else:
        root = args.directory.expanduser()
        folders = sorted(p for p in root.iterdir() if p.is_dir() and _files(p)) if root.is_dir() else []
        served = [(folder.name, _files(folder)) for folder in folders] or [(args.survey, _files(root) if root.is_dir() else [])]
        if not any(files for _, files in served):
            print(f"error: {args.directory} is not a directory with files (or survey folders of files) in it",
                  file=sys.stderr)
            return 2
        for survey, files in served:
            for path in files:
                server.survey(survey).put(path.name, path.read_bytes(),
                                          dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0))
        what = f"{sum(len(f) for _, f in served)} files of {args.directory} as " + ", ".join(s for s, _ in served)
    server.route(POPULATION_PATH, population_json())
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; pass --port", file=sys.stderr)
        return 2
    surveys = ",".join(sorted(server.surveys))
    print(f"Serving {what} at {server.url} and the population at {server.root}{POPULATION_PATH}", flush=True)
    print("Run the pipeline against it with:", flush=True)
    print(f'  make run ARGS="--contact-email you@example.com --state-dir .offline-state --allow-private-source '
          f'--source-url {server.url} --surveys {surveys} --population-url {server.root}{POPULATION_PATH}"', flush=True)
    print("Ctrl-C stops the server.", flush=True)
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


if __name__ == "__main__":
    raise SystemExit(main())
