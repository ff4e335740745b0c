"""Reading TSV / CSV / JSON / JSONL files into frames, with the GLUE conventions and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from lightpeft.data.task import first_line
from lightpeft.errors import LightPeftError

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


def read_table(path: Path) -> pd.DataFrame:
    """A `.csv` / `.tsv` / `.json` / `.jsonl` file as a frame with at least one row."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise LightPeftError(
            f"unsupported data file extension {suffix or '(none)'!r} for {path}; convert it to "
            f"{', '.join(TABLE_SUFFIXES)}"
        )
    if suffix == ".tsv":
        frame = read_tsv(path, header=0)
    elif suffix == ".csv":
        frame = _read_delimited(path, "CSV", {})
    else:
        frame = pd.DataFrame.from_records(read_json_records(path))
    require_rows(frame, path)
    return frame


def require_rows(frame: pd.DataFrame, path: Path) -> None:
    if len(frame) == 0:
        raise LightPeftError(f"data file {path} has no rows; pass a file with a header and at least one example")


def read_tsv(path: Path, header: int | None) -> pd.DataFrame:
    # GLUE convention: no quoting (texts contain unbalanced quotes), a possible BOM, and "NA"/"null" kept as text.
    options = {"sep": "\t", "header": header, "quoting": csv.QUOTE_NONE}
    return _read_delimited(path, "tab-separated text", options)


def _read_delimited(path: Path, kind: str, options: dict) -> pd.DataFrame:
    """pandas read with every value kept as a string ("NA" stays text) and a UTF-8 BOM skipped."""
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, **options)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()  # a 0-byte file: reported as "no rows" by the caller
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LightPeftError(f"cannot parse {path} as UTF-8 {kind} ({first_line(exc)}); fix the file") from None


def first_line_fields(path: Path) -> list[str]:
    """Tab-separated fields of the first line (a GLUE header, or CoLA's first row)."""
    with open(path, encoding="utf-8-sig") as handle:
        return handle.readline().rstrip("\r\n").split("\t")


def read_json(path: Path):
    """The parsed content of a `.json` file (any JSON value)."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LightPeftError(f"cannot parse {path} as JSON ({first_line(exc)}); fix the file") from None


def read_json_records(path: Path) -> list[dict]:
    """`.jsonl`: one object per line. `.json`: a list of objects, `{"data": [...]}`, or JSON lines as well."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        return _parse_json_records(text, lines=path.suffix.lower() == ".jsonl")
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        message = f"cannot parse {path} as JSON records ({first_line(exc)}); write one JSON object per row"
        raise LightPeftError(message) from None


def _parse_json_records(text: str, lines: bool) -> list[dict]:
    if not lines:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None  # maybe JSON lines under a .json name (as `datasets` writes them)
        if isinstance(loaded, dict) and len(loaded) == 1 and isinstance(next(iter(loaded.values())), list):
            loaded = next(iter(loaded.values()))
        if isinstance(loaded, list):
            _require_objects(loaded)
            return loaded
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    _require_objects(records)
    return records


def _require_objects(records: list) -> None:
    if not all(isinstance(record, dict) for record in records):
        raise TypeError("every record must be a JSON object")
