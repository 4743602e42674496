"""notebooks/reports.ipynb runs top to bottom on small inputs and shows the reports the pipeline computes."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from bls_loopback.population import population_json
from tests.conftest import ROOT

nbclient = pytest.importorskip("nbclient")
import nbformat  # noqa: E402  (nbclient depends on it)

NOTEBOOK = ROOT / "notebooks" / "reports.ipynb"
KERNEL_NAME = "bls-pipeline-test-python"

# Quarterly values Q01..Q04, then Q05 (the annual average, which the best-year report must ignore).
DATA = {
    "PRS30006032": {
        2013: ("1.7", "0.4", "1.0", "0.9", "1.0"),
        2014: ("0.9", "1.2", "0.8", "1.1", "1.0"),
        2015: ("-0.4", "0.6", "1.3", "0.2", "0.4"),
        2016: ("2.3", "0.1", "0.7", "1.0", "1.0"),
        2017: ("1.1", "1.5", "1.4", "0.6", "1.2"),
        2018: ("3.0", "0.2", "0.9", "1.8", "1.5"),
        2019: ("0.5", "2.1", "1.6", "0.3", "99.9"),  # with Q05 counted, 2019 would win
        2020: ("-6.8", "-9.9", "10.4", "3.1", "-0.8"),  # DataUSA has no 2020 population
        2021: ("4.2", "2.6", "1.9", "1.4", "2.5"),  # 10.1, the best year
    },
    "PRS30006012": {
        2014: ("4.1", "4.2", "4.4", "4.3", "4.3"),
        2015: ("4.3", "4.4", "4.5", "4.6", "4.5"),  # 17.8 (as floats: 17.799999999999997)
        2016: ("4.4", "4.5", "4.4", "4.5", "4.5"),  # 17.8 too: the tie goes to the earlier year
        2017: ("3.0", "3.1", "3.2", "3.3", "50.0"),
    },
    "PRS85006092": {
        2016: ("-1.5", "-0.5", "-0.3", "-0.7", "-0.8"),
        2017: ("-0.1", "-0.2", "-0.3", "-0.4", "-0.3"),  # -1.0, the largest of three negative sums
        2018: ("-2.0", "0.5", "-0.5", "-0.1", "-"),  # the Q05 value "-" is a malformed row
    },
}


def write_bls_data(path: Path) -> None:
    """Like pr.data.0.Current: tab-separated, CRLF, series_id padded right, values padded left."""
    lines = ["series_id        \tyear\tperiod\t       value\tfootnote_codes"]
    for series, years in DATA.items():
        for year, values in years.items():
            for quarter, value in enumerate(values, start=1):
                lines.append(f"{series:<17}\t{year}\tQ0{quarter}\t{value:>10}\t")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def kernel_for_this_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec that runs ipykernel with the interpreter running pytest, whatever kernels the machine has."""
    pytest.importorskip("ipykernel", reason="ipykernel is in requirements-dev.txt")
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")


def set_parameters(notebook: nbformat.NotebookNode, **values: str) -> None:
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    names = set(re.findall(r"^([A-Z_]+) = ", tagged[0].source, flags=re.MULTILINE))
    assert names == set(values), f"parameters cell defines {sorted(names)}"
    tagged[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())


def text_outputs(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def test_notebook_runs_and_shows_the_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_path = tmp_path / "pr.data.0.Current"
    write_bls_data(data_path)
    population_path = tmp_path / "population.json"
    population_path.write_bytes(population_json())
    plot_path = tmp_path / "reports.png"
    kernel_for_this_interpreter(tmp_path, monkeypatch)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    set_parameters(notebook, DATA_PATH=str(data_path), POPULATION_PATH=str(population_path),
                   SERIES_ID="PRS30006032", PERIOD="Q01")
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL_NAME, timeout=60, startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    env = {
        **os.environ,
        "BLS_PIPELINE_FUNCTIONS": str(ROOT / "functions"),
        "REPORTS_PLOT_PATH": str(plot_path),
        "MPLBACKEND": "Agg",
        "IPYTHONDIR": str(tmp_path / "ipython"),  # no user profile or startup files
    }
    client.execute(env=env)  # raises CellExecutionError if a cell fails

    text = text_outputs(notebook)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors and "Traceback" not in text, text

    assert "80 data rows read, 1 skipped as malformed" in text
    # Population 2013-2018: the six figures sum to 1932418848, so the mean is exactly 322069808; the squared
    # deviations sum to 86463159453544, /5 and sqrt gives the sample stddev 4158441.04.
    assert re.search(r"mean\s+322069808\.0\b", text), text
    assert re.search(r"stddev\s+4158441\.04\b", text), text
    assert re.search(r"stddev kind\s+sample \(n-1\)", text), text
    # Best year: sums of Q01-Q04 as exact decimals, Q05 ignored, ties to the earlier year.
    assert re.search(r"PRS30006012\s+2015\s+17\.8\s", text), text
    assert re.search(r"PRS30006032\s+2021\s+10\.1\s", text), text
    assert re.search(r"PRS85006092\s+2017\s+-1(\.0)?\s", text), text
    assert not re.search(r"PRS30006032\s+2019\s+104\.4", text)
    # PRS30006032 Q01 by year, with population; 2020 has none.
    assert re.search(r"PRS30006032\s+2013\s+Q01\s+1\.7\s+316128839\b", text), text
    assert re.search(r"PRS30006032\s+2018\s+Q01\s+3(\.0)?\s+327167439\b", text), text
    assert re.search(r"PRS30006032\s+2020\s+Q01\s+-6\.8\s+(n/a|<NA>)", text), text
    assert re.search(r"PRS30006032\s+2021\s+Q01\s+4\.2\s+331893745\b", text), text

    assert plot_path.is_file() and plot_path.stat().st_size > 1024


def test_the_notebook_command_executes_it_on_a_state_directory_and_writes_the_executed_copy(tmp_path: Path, capsys) -> None:
    from local_runner import notebook as command

    state = tmp_path / "state"
    (state / "s3" / "bls" / "pr").mkdir(parents=True)
    (state / "s3" / "datausa").mkdir(parents=True)
    write_bls_data(state / "s3" / "bls" / "pr" / "pr.data.0.Current")
    (state / "s3" / "datausa" / "population.json").write_bytes(population_json())
    original = NOTEBOOK.read_bytes()

    assert command.main(["--state-dir", str(state)]) == 0

    executed = nbformat.read(state / "reports.ipynb", as_version=4)
    text = text_outputs(executed)
    assert "80 data rows read, 1 skipped as malformed" in text and re.search(r"mean\s+322069808\.0\b", text)
    assert f"executed copy written to {state / 'reports.ipynb'}" in capsys.readouterr().out
    assert NOTEBOOK.read_bytes() == original

    assert command.main(["--state-dir", str(tmp_path / "empty")]) == 2
    assert "not found: run `make run` first" in capsys.readouterr().err
