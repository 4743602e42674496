"""`python -m bls_loopback` (`make serve`): serve a BLS-like directory and the population API on 127.0.0.1."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
from pathlib import Path

from .population import POPULATION_PATH, population_json
from .sample import sample_pr_files
from .server import BlsServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bls_loopback", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--directory", type=Path, default=None,
                        help="serve the files of this directory (default: a generated sample of pr)")
    parser.add_argument("--survey", default="pr", help="the directory's name in the URL (default: pr)")
    parser.add_argument("--port", type=int, default=8321, help="port on 127.0.0.1 (default: 8321; 0: any free one)")
    parser.add_argument("--max-requests-per-second", type=float, default=1.0,
                        help="block (HTTP 403) a client that asks more often, as BLS does (default: 1; 0: never)")
    return parser


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = BlsServer(base_path=f"/pub/time.series/{args.survey}/", port=args.port,
                       max_requests_per_second=args.max_requests_per_second or None)
    if args.directory is None:
        for name, body in sample_pr_files().items():
            server.put(name, body)
        what = "a generated sample of pr"
    else:
        files = sorted(p for p in args.directory.expanduser().iterdir() if p.is_file()) if args.directory.is_dir() else []
        if not files:
            print(f"error: {args.directory} is not a directory with files in it", file=sys.stderr)
            return 2
        for path in files:
            server.put(path.name, path.read_bytes(), dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0))
        what = f"{len(files)} files of {args.directory}"
    server.route(POPULATION_PATH, population_json())
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; pass --port", file=sys.stderr)
        return 2
    print(f"Serving {what} at {server.url} and the population at {server.root}{POPULATION_PATH}", flush=True)
    print("Run the pipeline against it with:", flush=True)
    print(f'  make run ARGS="--contact-email you@example.com --state-dir .offline-state --allow-private-source '
          f'--source-url {server.url} --population-url {server.root}{POPULATION_PATH}"', flush=True)
    print("Ctrl-C stops the server.", flush=True)
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
