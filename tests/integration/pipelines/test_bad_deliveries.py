"""Bad files through `tre dataset ingest`: each gets one clear sentence or a table of problems, exit code 1,
no traceback, nothing published. (Row-level problems in detail: test_ingest.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from pipeline_factories import IngestWorld
from typer.testing import CliRunner

from tre_platform.pipelines.cli import register_dataset_commands

HEADER = "nhs_number,date_of_birth,sex,admission_date,length_of_stay,cost,emergency"
ROW = "9434765919,1970-01-01,F,2020-01-01,3,1237.50,true"
GOOD = f"{HEADER}\n{ROW}\n"
CP1252 = f"{HEADER}\n{ROW}\n9434765919,1970-01-01,Zoë,2020-01-01,3,1.0,true\n".encode("cp1252")
CP1252_AT = CP1252.index("ë".encode("cp1252"))

#: content -> (problem kind, the words the user reads)
BAD: dict[str, tuple[bytes, str, str]] = {
    "empty": (b"", "empty_file", "the file is empty"),
    "utf16": (GOOD.encode("utf-16"), "not_utf8", "the file is UTF-16 text: save it as UTF-8"),
    "utf16-no-bom": (GOOD.encode("utf-16-le"), "not_utf8", "the file is UTF-16 text: save it as UTF-8"),
    "cp1252": (
        CP1252,
        "not_utf8",
        f"the file is not UTF-8 text: invalid byte at byte {CP1252_AT}: save it as UTF-8",
    ),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01", "not_tabular", "NUL byte at byte 8: binary"),
    "broken-parquet": (b"PAR1" + bytes(64), "not_tabular", "unreadable Parquet file"),
    "semicolons": (GOOD.replace(",", ";").encode(), "not_tabular", "the columns are separated by semicolons"),
    "header-only": (f"{HEADER}\n".encode(), "no_rows", "the file has a header but no data rows"),
    "unterminated-quote": (
        f'{HEADER}\n{ROW}\n9434765919,"1970-01-01,F,2020-01-01,3,1.0,true\n{ROW}\n'.encode(),
        "malformed_row",
        "the row does not have as many fields as the header",
    ),
    "wrong-schema": (b"patient,ward\n1,A\n", "unknown_column", "nothing was published"),
}


def _tre(*args: str) -> Any:
    app = typer.Typer()
    dataset_app = typer.Typer()
    register_dataset_commands(dataset_app)
    app.add_typer(dataset_app, name="dataset")
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_gets_a_clear_error_and_publishes_nothing(
    ingest_world: IngestWorld, tmp_path: Path, case: str
) -> None:
    content, kind, words = BAD[case]
    path = tmp_path / "delivery.csv"
    path.write_bytes(content)
    args = ("dataset", "ingest", str(path), "--dataset", "episodes_fast", "--as", ingest_world.owner.label)

    plain = _tre(*args)
    assert plain.exit_code == 1
    assert plain.exception is None or isinstance(plain.exception, SystemExit)
    said = " ".join(plain.stderr.split())
    assert words in said
    assert "nothing was published" in said
    assert "Traceback" not in plain.stdout + plain.stderr

    as_json = _tre(*args, "--json")
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert body["error"] == "delivery_invalid"
    assert kind in {p["problem"] for p in body["report"]["problems"]}
    research = ingest_world.data_dir / "research" / "episodes_fast"
    assert not research.exists() or [p for p in research.iterdir() if not p.name.startswith(".")] == []


def test_a_utf8_file_with_a_byte_order_mark_and_crlf_line_ends_is_accepted(
    ingest_world: IngestWorld, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + GOOD.replace("\n", "\r\n")).encode())
    result = _tre(
        "dataset",
        "ingest",
        str(path),
        "--dataset",
        "episodes_fast",
        "--as",
        ingest_world.owner.label,
        "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert (body["version"], body["row_count"]) == (1, 1)
