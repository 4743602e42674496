"""`python -m local_runner.notebook` (`make notebook`): execute notebooks/reports.ipynb on a run's two input files.

The inputs come from a local runner's state directory (default .local-state) or from a deployed stack's bucket
(`--bucket s3://NAME`, read with your usual AWS credentials). The executed notebook, outputs and chart included,
is written beside the inputs' state directory (or to --output), and the original is left unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "reports.ipynb"
DATA_KEY = "bls/pr/pr.data.0.Current"
POPULATION_KEY = "datausa/population.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_runner.notebook", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state-dir", type=Path, default=Path(".local-state"),
                       help="a local runner's state directory (default: .local-state)")
    where.add_argument("--bucket", metavar="s3://NAME", help="a deployed stack's mirror bucket instead")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the executed notebook (default: STATE_DIR/reports.ipynb, or "
                        "./reports-NAME.ipynb for --bucket)")
    parser.add_argument("--series-id", default="PRS30006032", help="the series of the third report")
    parser.add_argument("--period", default="Q01", help="the period of the third report")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (default: 600)")
    return parser


def parameters_for(args: argparse.Namespace) -> tuple[dict[str, str], Path]:
    """The notebook's parameters and the output path; raises ValueError naming what is missing."""
    if args.bucket:
        if not args.bucket.startswith("s3://") or not args.bucket[5:].strip("/"):
            raise ValueError(f"--bucket must look like s3://NAME, not {args.bucket!r}")
        base = "s3://" + args.bucket[5:].strip("/")
        paths = {"DATA_PATH": f"{base}/{DATA_KEY}", "POPULATION_PATH": f"{base}/{POPULATION_KEY}"}
        output = args.output or Path(f"reports-{base[5:]}.ipynb")
    else:
        objects = args.state_dir.resolve() / "s3"
        paths = {"DATA_PATH": str(objects / DATA_KEY), "POPULATION_PATH": str(objects / POPULATION_KEY)}
        missing = [p for p in paths.values() if not Path(p).is_file()]
        if missing:
            raise ValueError(f"{' and '.join(missing)} not found: run `make run` first (it fills {args.state_dir}), "
                             "or pass --state-dir DIR or --bucket s3://NAME")
        output = args.output or args.state_dir / "reports.ipynb"
    return {**paths, "SERIES_ID": args.series_id, "PERIOD": args.period}, output


def execute(parameters: dict[str, str], output: Path, timeout: int) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{NOTEBOOK} needs exactly one cell tagged 'parameters', has {len(tagged)}")
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by python -m local_runner.notebook\n"
        + "\n".join(f"{name} = {value!r}" for name, value in parameters.items()),
        metadata={"tags": ["injected-parameters"]},
    )
    notebook.cells.insert(tagged[0] + 1, injected)  # after the defaults, as papermill does
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not its notice about local TCP
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    try:
        client.execute()
    finally:
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, output)  # a failed run is written too: its traceback is in the failing cell


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parameters, output = parameters_for(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"notebook: {NOTEBOOK.relative_to(ROOT)} on {parameters['DATA_PATH']} and {parameters['POPULATION_PATH']}")
    from nbclient.exceptions import CellExecutionError

    try:
        execute(parameters, output, args.timeout)
    except CellExecutionError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        print(f"error: the notebook failed: {reason}; the executed copy with the traceback is {output}", file=sys.stderr)
        return 1
    print(f"notebook: executed copy written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
