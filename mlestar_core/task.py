"""Turn a task folder (MLE-bench layout) or a single CSV into a `Task`; describe it; unzip uploads.

Everything a user can get wrong ends in a `TaskError` whose message says what to add or fix,
never in a pandas traceback. Label conventions shared with grading and run-data splitting live
here too (`label_str`, `sorted_classes`, `normalize_ids`) so every layer stringifies the same way.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import shutil
import stat
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .model import ColumnKind, ColumnProfile, SubmissionKind, Task, TaskError, TaskType

PROFILE_ROWS = 200_000  # rows read for profiling; bigger files are only streamed for counts/labels
MAX_FILE_BYTES = 2_000_000_000  # load_task's default size limit per file
# Every model is scored on rows it was not trained on (K-fold, at least 2 folds): with fewer labelled
# rows a fold holds a handful of rows and the score is noise (a two-row table scored accuracy 0.0).
MIN_TRAIN_ROWS = 20
MAX_CLASSES = 20  # integer targets with at most this many values default to classification
DESCRIPTION_FILES = ("description.md", "task.txt", "description.txt")
_SAMPLE_RE = re.compile(r"^sample[_ -]?submission.*\.csv$", re.I)
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_BOOL_PAIRS = [{"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}, {"0", "1"}]
_DATE_LIKE = re.compile(
    r"^\s*(?:\d{4}[-/.]\d{1,2}(?:[-/.]\d{1,2})?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|\d{1,2}\s+[a-z]{3,9}\.?,?\s+\d{2,4}|[a-z]{3,9}\.?\s+\d{1,2},?\s+\d{2,4}|[a-z]{3,9}\s+\d{4})"
    r"(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*(?:z|[+-]\d{2}:?\d{2}|utc)?\s*$",
    re.I,
)


# ----------------------------------------------------------------------------------------------
# Shared label / id conventions
# ----------------------------------------------------------------------------------------------


def label_str(value: Any) -> str:
    """A class label as a string: 1, 1.0 and "1" all become "1"; True becomes "True"."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def sorted_classes(labels: Iterable[str]) -> list[str]:
    """Labels in the order a label encoder fitted on the pandas-read column would use.

    Numeric labels sort numerically ("2" before "10"), everything else as strings
    ("False" < "True", "no" < "yes"). Index i of this list is the encoded class i.
    """
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def normalize_ids(values: Iterable[Any]) -> list[str]:
    """Ids as comparable strings: 7, 7.0 and "7" match; other strings are kept (stripped)."""
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            s = v.strip()
            # Only plain decimal numbers are normalised: float() would also accept "0001_01"
            # (underscores), "nan" or "1e3", which are ids in their own right.
            if _PLAIN_NUMBER.match(s) and float(s).is_integer():
                out.append(str(int(float(s))))
            else:
                out.append(s)
        else:
            out.append(label_str(v))
    return out


# ----------------------------------------------------------------------------------------------
# CSV reading with friendly errors
# ----------------------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # unreachable; keeps type checkers happy


def _check_file(path: Path, role: str, max_bytes: int) -> None:
    if not path.is_file():
        raise TaskError(f"{role} file {path} does not exist; check the path or add the file.")
    size = path.stat().st_size
    if size > max_bytes:
        raise TaskError(
            f"{path.name} is {_fmt_bytes(size)}, over the {_fmt_bytes(max_bytes)} limit per file; "
            "use a smaller sample of the data."
        )
    if size == 0:
        raise TaskError(f"{path.name} is empty (0 bytes); add a header row and data rows.")


SNIFF_BYTES = 64 * 1024  # the head of a CSV checked for format problems before pandas reads it
_DELIMITERS = {";": "semicolons (;)", "\t": "tabs", "|": "pipes (|)"}
# Signatures of files people rename to .csv by mistake: the message can say what the file is.
_MAGIC = [
    (b"PK\x03\x04", "a zip archive or an Excel .xlsx workbook"),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel .xls workbook"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"SQLite format 3", "an SQLite database"),
]
_TO_CSV_HINT = "export the table as a CSV file (comma-separated, UTF-8) and use that"


def _utf8_problem(blocks: Iterable[bytes], complete: bool = True) -> tuple[int, bytes, int] | None:
    """(line number, that line's bytes, the offending byte) of the first non-UTF-8 byte, or None.

    Streams the blocks, so a big file is checked without holding it. `complete=False` means the
    blocks are only the head of the file: a character cut at the very end is not an error.
    """
    line_no, carry = 1, b""
    for block in blocks:
        data = carry + block
        try:
            data.decode("utf-8")
            good, carry = data, b""
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data" and len(data) - e.start < 4:
                good, carry = data[: e.start], data[e.start:]  # a character split across two blocks
            else:
                start = data.rfind(b"\n", 0, e.start) + 1
                end = data.find(b"\n", e.start)
                return (line_no + data.count(b"\n", 0, e.start), data[start: end if end >= 0 else len(data)],
                        data[e.start])
        line_no += good.count(b"\n")
    if carry and complete:
        start = carry.rfind(b"\n") + 1
        return line_no, carry[start:], carry[0]
    return None


def _encoding_message(name: str, problem: tuple[int, bytes, int]) -> str:
    line_no, line, byte = problem
    try:
        char = bytes([byte]).decode("cp1252")
        shown = line.decode("cp1252", errors="replace").strip()
        guess = (f"byte 0x{byte:02x}, which is {char!r} in Latin-1 / Windows-1252 (the usual encoding of CSV "
                 f"files saved by Excel on Windows)")
        fix = f"pd.read_csv({name!r}, encoding='cp1252').to_csv({name!r}, index=False)"
    except UnicodeDecodeError:
        shown = line.decode("utf-8", errors="replace").strip()
        guess = f"byte 0x{byte:02x}, which is not UTF-8 (the file uses another encoding)"
        fix = f"pd.read_csv({name!r}, encoding='<its encoding>').to_csv({name!r}, index=False)"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (f"{name} is not UTF-8 text: line {line_no} ({shown}) has {guess}. Re-save it as UTF-8: in Excel, "
            f"Save As → 'CSV UTF-8 (Comma delimited)'; in pandas, {fix}.")


def check_csv_bytes(head: bytes, name: str, *, complete: bool) -> None:
    """Raise a TaskError for the CSV format problems pandas gets wrong or explains badly.

    `head` is the file's first bytes (all of it when `complete`). Checked: binary files and
    UTF-16 named .csv, non-UTF-8 text (the message says which encoding it looks like), another
    delimiter than the comma (pandas reads such a file as one column), Excel's `sep=` line,
    duplicate column names (pandas silently renames them to `a.1`) and rows with more fields
    than the header (pandas then takes the first column as the index and shifts every value).
    """
    if not head:
        return
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TaskError(f"{name} is UTF-16 text (Excel's 'Unicode Text'), not UTF-8; re-save it as UTF-8 — in "
                        "Excel, Save As → 'CSV UTF-8 (Comma delimited)'.")
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    controls = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 12, 13))
    if kind or b"\x00" in head or controls > 0.05 * len(head):
        # A NUL byte never occurs in UTF-8 text, nor do many other control characters.
        kind = kind or "a binary file, e.g. an Excel workbook or a zip"
        raise TaskError(f"{name} is not a text CSV (it looks like {kind}); {_TO_CSV_HINT}.")
    problem = _utf8_problem([head], complete=complete)
    if problem is not None:
        raise TaskError(_encoding_message(name, problem))
    text = head.decode("utf-8", errors="ignore").removeprefix("\ufeff")
    if not complete:  # the last line may be cut in the middle: leave it to pandas
        text = text[: text.rfind("\n") + 1]
    first_line = text.split("\n", 1)[0].rstrip("\r")
    sep = re.fullmatch(r"sep=(.)", first_line)
    if sep:
        raise TaskError(f"{name} starts with Excel's {first_line!r} line; delete that first line and save the "
                        "file with commas between the columns.")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            return
        header_line = reader.line_num
        if len(header) == 1:
            _check_delimiter(name, header[0], text)
        _check_duplicates(name, header)
        for row in reader:
            if len(row) > len(header):
                raise TaskError(
                    f"{name} is not a valid CSV at line {reader.line_num}: that row has {len(row)} fields but "
                    f"the header (line {header_line}) has {len(header)}. Check that row for an extra comma "
                    "(quote values that contain commas, e.g. \"Smith, John\") or add the missing column name "
                    "to the header.")
    except csv.Error:
        return  # e.g. a field over the csv module's size limit: pandas reads it and reports what is wrong


def _check_delimiter(name: str, header: str, text: str) -> None:
    counts = {d: header.count(d) for d in _DELIMITERS}
    delim = max(counts, key=lambda d: counts[d])
    if counts[delim] == 0:
        return  # a single-column file
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if r][:2]
    if len(rows) == 2 and len(rows[1]) != len(rows[0]):
        return  # the header happens to contain that character, but the rows do not split on it
    # Not read with that delimiter: every script of a run reads the files with pandas' default comma.
    decimal = " (add decimal=',' if numbers are written like 1,5)" if delim == ";" else ""
    raise TaskError(
        f"{name} separates its columns with {_DELIMITERS[delim]}, not commas (its header reads "
        f"{header[:80]!r}), so it would be read as a single column. Save it as a comma-separated CSV, e.g. "
        f"pd.read_csv({name!r}, sep={delim!r}).to_csv({name!r}, index=False){decimal}, and load it again.")


def _check_duplicates(name: str, header: list[str]) -> None:
    positions: dict[str, list[int]] = {}
    for i, col in enumerate(header, start=1):
        if col.strip():  # unnamed columns (a saved index) become "Unnamed: 0", "Unnamed: 1": not duplicates
            positions.setdefault(col, []).append(i)
    dups = {col: pos for col, pos in positions.items() if len(pos) > 1}
    if dups:
        listed = "; ".join(f"{col!r} (columns {', '.join(map(str, pos))})" for col, pos in dups.items())
        first = next(iter(dups))
        raise TaskError(f"{name} has duplicate column names: {listed}. pandas would silently rename the second "
                        f"one to '{first}.1'; rename the columns so every name is unique (or drop the copy).")


def check_csv_file(path: Path) -> None:
    """`check_csv_bytes` on the head of a CSV file on disk (a fast check of its first SNIFF_BYTES)."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES + 1)
    check_csv_bytes(head[:SNIFF_BYTES], path.name, complete=len(head) <= SNIFF_BYTES)


def _stream(path: Path, block: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(block):
            yield chunk


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv(path: Path, *, nrows: int | None = None, usecols: list[str] | None = None,
             dtype: Any = None, keep_default_na: bool = True) -> pd.DataFrame:
    """pandas.read_csv (C engine) whose failures become TaskErrors naming the file and line."""
    check_csv_file(path)
    try:
        return pd.read_csv(path, engine="c", nrows=nrows, usecols=usecols, dtype=dtype,
                           keep_default_na=keep_default_na, low_memory=False)
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path.name} is empty: it has no header row. Add column names and data rows.") \
            from None
    except pd.errors.ParserError as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown parse error"
        fields = _FIELDS_RE.search(msg)
        if fields:  # past the checked head: the same words as check_csv_bytes
            expected, line, saw = fields.groups()
            raise TaskError(
                f"{path.name} is not a valid CSV at line {line}: that row has {saw} fields but the header has "
                f"{expected}. Check that row for an extra comma (quote values that contain commas, e.g. "
                "\"Smith, John\") or add the missing column name to the header.") from None
        quote = re.search(r"EOF inside string starting at row (\d+)", msg)
        if quote:  # pandas counts rows from 0 (the header): row n is line n + 1
            raise TaskError(
                f"{path.name} is not a valid CSV at line {int(quote.group(1)) + 1}: a quote (\") opened in that "
                "row is never closed, so the rest of the file would be read as one value. Close the quote, or "
                "remove it.") from None
        m = re.search(r"line (\d+)", msg)
        where = f" at line {m.group(1)}" if m else ""
        raise TaskError(
            f"{path.name} is not a valid CSV{where}: {msg}. Check that row for extra commas, "
            "a missing field or an unbalanced quote."
        ) from None
    except UnicodeDecodeError:
        problem = _utf8_problem(_stream(path))  # past the checked head: find the line
        if problem is None:
            raise TaskError(f"{path.name} is not UTF-8 text; re-save it as a UTF-8 encoded CSV.") from None
        raise TaskError(_encoding_message(path.name, problem)) from None
    except ValueError as e:  # e.g. usecols naming a column the file lacks
        raise TaskError(f"{path.name}: {e}") from None


def _read_for_profile(path: Path) -> tuple[pd.DataFrame, bool]:
    """The first PROFILE_ROWS rows and whether the file may hold more."""
    df = read_csv(path, nrows=PROFILE_ROWS)
    if len(df.columns) == 0:
        raise TaskError(f"{path.name} has no columns; add a header row.")
    return df, len(df) >= PROFILE_ROWS


def _count_rows(path: Path, first_column: str) -> int:
    """Row count of a big CSV, streamed one column at a time to keep memory flat."""
    total = 0
    try:
        for chunk in pd.read_csv(path, engine="c", usecols=[first_column], chunksize=1_000_000):
            total += len(chunk)
    except pd.errors.ParserError as e:
        raise TaskError(f"{path.name} is not a valid CSV: {e}".strip()) from None
    return total


# ----------------------------------------------------------------------------------------------
# Locating the files of a task
# ----------------------------------------------------------------------------------------------


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def is_private_dir(folder: Path) -> bool:
    """An MLE-bench `private/` folder (the competition's answers): `private` beside a `public/` or in `prepared/`."""
    return (folder.name.lower() == "private"
            and ((folder.parent / "public").is_dir() or folder.parent.name.lower() == "prepared"))


def _refuse_private(path: Path) -> None:
    """The answers of an MLE-bench competition are never task data: no script may ever see them."""
    for d in (path, *path.parents):
        if is_private_dir(d):
            raise TaskError(
                f"{path} is inside {d}, the competition's private answers, which a run must never see. Pass the "
                "competition folder, its prepared/ folder or prepared/public/ instead; the answers are found there "
                "on their own and only used to grade the final submission.")


def _resolve_data_dir(folder: Path) -> Path:
    """The folder holding train.csv: `folder` itself, its public/, or (MLE-bench) its prepared/public/."""
    _refuse_private(folder)
    for cand in (folder, folder / "public", folder / "prepared" / "public"):
        if cand.is_dir() and any(p.name.lower() == "train.csv" for p in cand.iterdir() if p.is_file()):
            return cand
    mlebench = next((c for c in (folder / "prepared" / "public", folder / "public") if c.is_dir()), None)
    if mlebench is not None:
        csvs = sorted(p.name for p in mlebench.iterdir() if p.suffix.lower() == ".csv")
        hint = f" (its CSV files: {', '.join(csvs)})" if csvs else " (it holds no CSV file)"
        raise TaskError(
            f"no train.csv in {mlebench}{hint}. This looks like an MLE-bench competition folder, but only tabular "
            "competitions whose prepared/public/ holds train.csv (with test.csv, sample_submission.csv and "
            "description.md) can run here; rename the training table to train.csv if it is one.")
    csvs = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".csv")
    hint = f" (CSV files found: {', '.join(csvs)}; rename the training table to train.csv)" if csvs else ""
    raise TaskError(
        f"no train.csv in {folder}{hint}. A task folder needs train.csv, and optionally test.csv, "
        "sample_submission.csv and description.md (directly, in a public/ subfolder, or MLE-bench's "
        "prepared/public/)."
    )


def _description_dirs(data_dir: Path) -> list[Path]:
    """Where a description may sit: the data folder, then (MLE-bench) prepared/ and the competition folder."""
    dirs = [data_dir]
    if data_dir.name == "public":
        dirs.append(data_dir.parent)
        if data_dir.parent.name.lower() == "prepared":
            dirs.append(data_dir.parent.parent)
    return dirs


def _find_description(data_dir: Path) -> str:
    for d in _description_dirs(data_dir):
        for fname in DESCRIPTION_FILES:
            for p in d.iterdir():
                if p.is_file() and p.name.lower() == fname:
                    return p.read_text(encoding="utf-8", errors="replace")
    return ""


def _pick_sample(names: list[str]) -> str | None:
    cands = [n for n in names if _SAMPLE_RE.match(n)]
    if not cands:
        return None
    # Prefer the canonical name, then the shortest ("sample_submission.csv" over "..._v2.csv").
    return sorted(cands, key=lambda n: (n.lower() != "sample_submission.csv", len(n), n))[0]


def _file_ref(path: Path, data_dir: Path) -> str:
    """A file name relative to data_dir, or an absolute path when it lives elsewhere."""
    try:
        return str(path.resolve().relative_to(data_dir.resolve()))
    except ValueError:
        return str(path.resolve())


# ----------------------------------------------------------------------------------------------
# Deriving target, id, type, metric, submission format
# ----------------------------------------------------------------------------------------------


def _similar(name: str, columns: Iterable[str]) -> str:
    cols = list(columns)
    lower = {c.lower(): c for c in cols}
    close = difflib.get_close_matches(name, cols, n=5, cutoff=0.5)
    close += [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.5)]
    close = list(dict.fromkeys(close))
    if close:
        return "similar columns: " + ", ".join(close)
    return "columns: " + ", ".join(cols[:30]) + (" ..." if len(cols) > 30 else "")


_TOKEN = r"[`'\"*“”‘’]*([A-Za-z_][\w.-]*?)[`'\"*“”‘’]*"
_TARGET_PATTERNS = [
    re.compile(r"target(?:\s+(?:column|variable|field|label))?\s*(?:is|:|=|will\s+be)\s*(?:the\s+)?"
               r"(?:column\s+)?" + _TOKEN + r"(?=[\s,.;:)]|$)", re.I),
    re.compile(_TOKEN + r"\s+(?:column\s+)?(?:is|as)\s+(?:the\s+)?target\b", re.I),
    re.compile(r"\b(?:predict|forecast|estimate)(?:ing|s|ed)?\s+(?:the\s+|a\s+|whether\s+|which\s+|if\s+)?"
               r"(?:value\s+of\s+(?:the\s+)?|column\s+)?" + _TOKEN + r"(?=[\s,.;:)]|$)", re.I),
]
_QUOTED = re.compile(r"`([^`\n]{1,80})`|\*\*([^*\n]{1,80})\*\*|\"([^\"\n]{1,80})\"|'([^'\n]{1,80})'")
_TARGET_CUE = re.compile(r"predict|target|forecast|estimate|label", re.I)


_QUOTED_TOKEN = r"(?:`([^`\n]{1,80})`|\*\*([^*\n]{1,80})\*\*|\"([^\"\n]{1,80})\"|'([^'\n]{1,80})')"
# A target named in so many words and quoted ("the target is `SalePrice`", "`price` is the target", "the target
# `churned`"): strong enough to say it is missing from the data, unlike "predict whether a customer churns".
_NAMED_TARGET = [
    re.compile(r"\btarget(?:\s+(?:column|variable|field|label))?\s*(?:is|:|=|will\s+be)?\s*(?:the\s+)?"
               r"(?:column\s+)?" + _QUOTED_TOKEN, re.I),
    re.compile(_QUOTED_TOKEN + r"\s+(?:column\s+)?(?:is|as)\s+(?:the\s+)?target\b", re.I),
]


def normalised_name(name: str) -> str:
    """A column name compared without case and punctuation: "SalePrice", "sale_price" and "Sale Price" agree."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_column(name: str, columns: Iterable[str]) -> str | None:
    """The column `name` means: the exact name, else the one column equal without case, else the one column
    equal as a normalised name (`normalised_name`); None when there is none or more than one."""
    cols = list(columns)
    if name in cols:
        return name
    for key in (str.lower, normalised_name):
        hits = [c for c in cols if key(c) == key(name)]
        if len(hits) == 1 and key(name):
            return hits[0]
        if hits:
            return None  # ambiguous: never guess between two columns
    return None


def closest_columns(name: str, columns: Iterable[str], n: int = 3) -> list[str]:
    """The columns most like `name` (compared as normalised names), best first."""
    cols = list(columns)
    by_norm: dict[str, list[str]] = {}
    for c in cols:
        by_norm.setdefault(normalised_name(c), []).append(c)
    close = difflib.get_close_matches(normalised_name(name), list(by_norm), n=n, cutoff=0.5)
    return [c for key in close for c in by_norm[key]][:n]


def _columns_and_closest(name: str, columns: list[str]) -> str:
    """'columns: a, b, c; closest: b' for a message about a column that is not there."""
    close = closest_columns(name, columns)
    return f"columns: {_names(columns)}; closest: {', '.join(close) if close else 'none is close'}"


def _target_mention(text: str, candidates: list[str]) -> tuple[str, str] | None:
    """(train column, the words the description uses for it) for the column the description names as the thing
    to predict (first mention wins); names match without case and punctuation ("SalePrice" is `sale_price`)."""
    if not text or not candidates:
        return None

    def match(token: str) -> str | None:
        return match_column(token.strip().strip(".,:;"), candidates)

    found: list[tuple[int, str, str]] = []
    for pattern in _TARGET_PATTERNS:
        for m in pattern.finditer(text):
            col = match(m.group(1))
            if col:
                found.append((m.start(), col, m.group(1).strip().strip(".,:;")))
    if found:
        _, col, token = min(found)
        return col, token
    # Fallback: a quoted column name in a sentence that talks about predicting / the target.
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
        if not _TARGET_CUE.search(sentence):
            continue
        for m in _QUOTED.finditer(sentence):
            token = next(g for g in m.groups() if g)
            col = match(token)
            if col:
                return col, token.strip().strip(".,:;")
    return None


def _target_from_description(text: str, candidates: list[str]) -> str | None:
    """A train column the description names as the thing to predict (first mention wins)."""
    mention = _target_mention(text, candidates)
    return mention[0] if mention else None


def described_target(text: str) -> str | None:
    """The target the description names in so many words, quoted ("the target is `SalePrice`"), whether or
    not the data has such a column (first mention wins)."""
    found = [(m.start(), next(g for g in m.groups() if g).strip().strip(".,:;"))
             for pattern in _NAMED_TARGET for m in pattern.finditer(text or "")]
    return min(found)[1] if found else None


def _idlike_name(name: str) -> bool:
    if name.lower() in ("id", "key", "uuid", "guid"):
        return True
    if re.search(r"[_\-\s](id|key|uuid)$", name, re.I):
        return True
    return bool(re.search(r"[a-z0-9](Id|ID)$", name))  # camelCase: PassengerId, customerID


def _is_unique(s: pd.Series) -> bool:
    return len(s) > 0 and not s.isna().any() and s.is_unique


def _resolve_metric(name: str) -> str:
    if name in metrics.METRICS:
        return name
    norm = " ".join(re.sub(r"[-_]", " ", name.strip().lower()).split())
    for m in metrics.METRICS.values():
        if norm == m.name.replace("_", " ") or norm in {" ".join(re.sub(r"[-_]", " ", a).split())
                                                        for a in m.aliases}:
            return m.name
    known = ", ".join(sorted(metrics.METRICS))
    raise TaskError(f"unknown metric {name!r}; known metrics: {known}.")


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _target_facts(y: pd.Series) -> tuple[bool, bool, int]:
    """(can_regress, can_classify, n_unique) for a non-null target column."""
    n_unique = int(y.nunique())
    numeric = _is_numeric(y)
    integer_valued = numeric and bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))
    can_classify = not numeric or integer_valued or n_unique <= MAX_CLASSES
    return numeric, can_classify, n_unique


def _infer_task_type(target: str, y: pd.Series, metric: str | None, task_type: str | None,
                     class_columns: bool) -> TaskType:
    can_regress, can_classify, n_unique = _target_facts(y)
    shown = ", ".join(label_str(v) for v in list(pd.unique(y))[:5])
    if task_type is not None:
        if task_type not in ("binary", "multiclass", "regression"):
            raise TaskError(f"unknown task type {task_type!r}; use binary, multiclass or regression.")
        if task_type == "regression" and not can_regress:
            raise TaskError(f"target {target!r} is not numeric (values like {shown}); it cannot be a "
                            "regression target. Use task_type='binary' or 'multiclass'.")
        if task_type != "regression" and not can_classify:
            raise TaskError(f"target {target!r} has {n_unique} distinct non-integer values; it looks "
                            "continuous, not like class labels. Use task_type='regression'.")
        if task_type == "binary" and n_unique != 2:
            raise TaskError(f"task type 'binary' needs exactly 2 target values, but {target!r} has "
                            f"{n_unique}. Use task_type='multiclass' or 'regression'.")
        return task_type  # type: ignore[return-value]
    if metric is not None:
        m = metrics.get_metric(metric)
        if m.task_types == ("regression",):
            if not can_regress:
                raise TaskError(f"metric {m.title} is for regression, but target {target!r} holds class "
                                f"labels (values like {shown}). Pass a classification metric "
                                f"(e.g. accuracy, roc_auc, log_loss, f1) or fix the target.")
            return "regression"
        if not can_classify:
            raise TaskError(f"metric {m.title} is for classification, but target {target!r} has {n_unique} "
                            "distinct continuous values. Pass a regression metric (e.g. rmse, mae) "
                            "or fix the target.")
        return "binary" if n_unique == 2 else "multiclass"
    if class_columns and can_classify:
        return "binary" if n_unique == 2 else "multiclass"
    if not can_regress or (can_classify and n_unique <= MAX_CLASSES and _integer_or_label(y)):
        return "binary" if n_unique == 2 else "multiclass"
    return "regression"


def _integer_or_label(y: pd.Series) -> bool:
    if not _is_numeric(y):
        return True
    return bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))


def _match_class_columns(pred_cols: list[str], classes: list[str]) -> list[str] | None:
    """The class each probability column stands for ("class_0" -> "0"), in column order."""
    if len(pred_cols) != len(classes):
        return None
    out: list[str] = []
    for col in pred_cols:
        hits = [c for c in classes if col == c] or [c for c in classes if col.lower() == c.lower()]
        if not hits:
            hits = [c for c in classes
                    if re.search(r"(?:^|[_\-\s.:])" + re.escape(c.lower()) + r"$", col.lower())
                    or re.search(r"^" + re.escape(c.lower()) + r"(?:[_\-\s.:]|$)", col.lower())]
        if len(hits) > 1:  # "class_1" vs classes "1" and "_1"? prefer the longest match
            hits = sorted(hits, key=len, reverse=True)[:1]
        if not hits or hits[0] in out:
            return None
        out.append(hits[0])
    return out


# ----------------------------------------------------------------------------------------------
# Column profiling
# ----------------------------------------------------------------------------------------------


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.head(1000)
    if len(sample) == 0 or sample.map(lambda v: bool(_DATE_LIKE.match(v))).mean() < 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return float(parsed.notna().mean()) >= 0.9


def _column_kind(name: str, s: pd.Series, id_column: str | None) -> ColumnKind:
    if name == id_column:
        return "id"
    non_null = s.dropna()
    n_unique = int(non_null.nunique())
    if n_unique <= 1:
        return "constant"
    if pd.api.types.is_bool_dtype(s):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    if n_unique == 2 and {label_str(v).lower() for v in non_null.unique()} in _BOOL_PAIRS:
        return "boolean"
    unique_per_row = n_unique == len(s) and len(s) > 1
    if _is_numeric(s):
        integer = pd.api.types.is_integer_dtype(s)
        return "id" if unique_per_row and integer and _idlike_name(name) else "numeric"
    if unique_per_row and _idlike_name(name):
        return "id"
    vals = non_null.astype(str)
    if _looks_like_dates(vals):
        return "datetime"
    lengths = vals.str.len()
    has_space = float(vals.str.contains(" ", regex=False).mean())
    high_card = n_unique > 50 or n_unique >= 0.5 * len(vals)
    if has_space >= 0.5 and float(lengths.mean()) > 25 and high_card:
        return "text"
    return "categorical"


def profile_column(name: str, s: pd.Series, id_column: str | None = None) -> ColumnProfile:
    """Kind, dtype, distinct count, missing share and an example value of one column."""
    non_null = s.dropna()
    example = label_str(non_null.iloc[0]) if len(non_null) else ""
    if len(example) > 60:
        example = example[:57] + "..."
    return ColumnProfile(
        name=name,
        kind=_column_kind(name, s, id_column),
        dtype=str(s.dtype),
        n_unique=int(non_null.nunique()),
        missing_fraction=round(1 - len(non_null) / len(s), 4) if len(s) else 0.0,
        example=example,
    )


# ----------------------------------------------------------------------------------------------
# load_task
# ----------------------------------------------------------------------------------------------


# File and folder names that say nothing about the task: a run named "train" is one of many.
GENERIC_NAMES = frozenset({"train", "training", "data", "dataset", "input", "public", "task", "train_data",
                           "training_data", "upload", "uploads"})


def descriptive_name(name: str, target: str, task_type: str) -> str:
    """`name`, unless it is a generic file name like "train": then what is predicted, e.g. "price (regression)"."""
    if name.strip().lower() in GENERIC_NAMES or not name.strip():
        return f"{target} ({task_type})"
    return name


def load_task(
    path: str | Path,
    *,
    target: str | None = None,
    description: str | None = None,
    metric: str | None = None,
    task_type: str | None = None,
    id_column: str | None = None,
    name: str | None = None,
    max_bytes: int | None = None,
    test_path: str | Path | None = None,
    sample_submission_path: str | Path | None = None,
) -> Task:
    """Read a task folder or a single CSV and derive everything a run needs.

    Keyword arguments override whatever would be derived from the files and the description;
    `max_bytes` is the size limit per file (default MAX_FILE_BYTES).
    """
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    path = Path(path).expanduser()
    if not path.exists():
        raise TaskError(f"{path} does not exist; pass a task folder (with train.csv) or a CSV file.")

    # --- locate files ---
    other_files: list[str] = []
    if path.is_dir():
        data_dir = _resolve_data_dir(path)
        names = sorted(p.name for p in data_dir.iterdir() if not _is_hidden(p.name))
        train_file = next(n for n in names if n.lower() == "train.csv")
        test_file = next((n for n in names if n.lower() == "test.csv"), None)
        sample_file = _pick_sample(names)
        desc_text = _find_description(data_dir)
        used = {train_file, test_file, sample_file}
        # Every other file is copied to the scripts' ./input/: never a competition's private/ answers.
        other_files = [n for n in names if n not in used and n.lower() not in DESCRIPTION_FILES
                       and not is_private_dir(data_dir / n)]
        default_name = data_dir.name
        if data_dir.name == "public":  # MLE-bench: <competition>/prepared/public
            default_name = data_dir.parent.parent.name if data_dir.parent.name.lower() == "prepared" \
                else data_dir.parent.name
    else:
        if path.suffix.lower() == ".zip":
            raise TaskError(f"{path.name} is a zip archive; unpack it with extract_task_zip first.")
        _refuse_private(path.parent)
        data_dir = path.parent
        train_file, test_file, sample_file = path.name, None, None
        desc_text = ""
        default_name = path.stem
    for given in (test_path, sample_submission_path):
        if given is not None:
            _refuse_private(Path(given).expanduser().resolve().parent)
    if test_path is not None:
        _check_file(Path(test_path), "test", max_bytes)
        test_file = _file_ref(Path(test_path), data_dir)
    if sample_submission_path is not None:
        _check_file(Path(sample_submission_path), "sample submission", max_bytes)
        sample_file = _file_ref(Path(sample_submission_path), data_dir)
    if description is not None:
        desc_text = description

    # --- read ---
    train_path = data_dir / train_file
    _check_file(train_path, "train", max_bytes)
    train, train_truncated = _read_for_profile(train_path)
    if len(train) == 0:
        raise TaskError(f"{train_file} has a header but no data rows; add training rows.")
    test: pd.DataFrame | None = None
    test_truncated = False
    if test_file is not None:
        _check_file(data_dir / test_file, "test", max_bytes)
        test, test_truncated = _read_for_profile(data_dir / test_file)
        if len(test) == 0:
            raise TaskError(f"{Path(test_file).name} has a header but no rows; add test rows or remove it.")
    sample: pd.DataFrame | None = None
    if sample_file is not None:
        _check_file(data_dir / sample_file, "sample submission", max_bytes)
        sample = read_csv(data_dir / sample_file, nrows=1000)
    train_cols = [str(c) for c in train.columns]
    test_cols = [str(c) for c in test.columns] if test is not None else None
    sample_cols = [str(c) for c in sample.columns] if sample is not None else None
    pred_frame = test if test is not None else train  # where submission ids come from

    # --- target ---
    sample_id = None
    if sample_cols and len(sample_cols) > 1 and sample_cols[0] in pred_frame.columns:
        sample_id = sample_cols[0]
    sample_pred = [c for c in (sample_cols or []) if c != sample_id]
    if target is not None:
        if target not in train_cols:
            raise TaskError(f"target column {target!r} is not in {train_file}; "
                            f"{_similar(target, train_cols)}. Name the column to predict with --target "
                            "(the Target column menu in the app).")
    if test_cols is not None:
        # Before deriving the target: a test file from another table would only make that fail confusingly.
        _check_test_columns(train_cols, test_cols, target, sample_id, train_file, str(test_file))
    notes: list[str] = []
    if target is None:
        target, notes = _derive_target(train_cols, test_cols, sample_pred, sample_id, desc_text, train_file,
                                       sample_file)
    else:
        notes = _chosen_target_notes(target, train_cols, test_cols, sample_pred, sample_id, desc_text, train_file,
                                     sample_file)

    # --- id column ---
    if id_column is not None:
        if id_column not in pred_frame.columns and id_column not in train.columns:
            raise TaskError(f"id column {id_column!r} is not in the data; {_similar(id_column, train_cols)}.")
    else:
        id_column = _derive_id(sample_id, pred_frame, target)

    # --- columns the test file lacks are not known at prediction time: never features ---
    train_only: list[str] = []
    if test_cols is not None:
        train_only = [c for c in train_cols if c not in test_cols and c not in (target, id_column)]
        if train_only:
            notes.append(
                f"{Path(test_file or 'test.csv').name} lacks {', '.join(train_only)}, which "
                f"{train_file} has; they are not known at prediction time, so they are not used as features."
            )
        test_only = [c for c in test_cols if c not in train_cols and c not in (id_column, sample_id)]
        if test_only:
            these = "they are" if len(test_only) > 1 else "it is"
            notes.append(f"{Path(test_file or 'test.csv').name} has {', '.join(test_only)}, which {train_file} "
                         f"lacks; a model cannot learn from what it was not trained on, so {these} ignored.")

    # --- target values (all rows, even for huge files) ---
    y_all = read_csv(train_path, usecols=[target])[target] if train_truncated else train[target]
    n_train_rows = len(y_all)
    y = y_all.dropna()
    if len(y) == 0:
        raise TaskError(f"target column {target!r} has no values in {train_file}: all {n_train_rows} rows are "
                        "empty. Fill in the target values, or pick another target column.")
    if y.nunique() < 2:
        raise TaskError(f"target column {target!r} has a single value in {train_file}: "
                        f"{label_str(y.iloc[0])!r} in all {len(y)} rows with a value. A model needs at least two "
                        "different target values (two classes); add rows of the other classes, or pick another "
                        "target column.")

    # --- metric and task type ---
    if metric is not None:
        metric_name = _resolve_metric(metric)
    else:
        metric_name = metrics.find_metric_in_text(desc_text)
        unsupported = metrics.find_unsupported_metric_in_text(desc_text) if metric_name is None else None
        if unsupported is not None:
            # Never score a task on a metric other than the one it is judged by without saying so.
            raise TaskError(f"the description says the task is judged by {unsupported}, which this tool does not "
                            "support (and it will not score on another metric without asking). Pick a supported "
                            "metric with --metric (the Metric menu in the app): "
                            f"{', '.join(sorted(metrics.METRICS))}.")
    class_columns = len(sample_pred) > 1
    ttype = _infer_task_type(target, y, metric_name, task_type, class_columns)
    metric_defaulted = metric_name is None
    if metric_name is None:
        metric_name = metrics.DEFAULT_METRIC[ttype]
    m = metrics.get_metric(metric_name)
    if metric_defaulted:
        where = "The description names no metric" if desc_text.strip() else "There is no description"
        notes.append(f"{where}, so the metric is the default for {ttype} tasks: {m.title} ({metric_name}). "
                     "If the task is judged by another one, choose it with --metric (the Metric menu in the app).")
    if ttype not in m.task_types:
        kind = {("regression",): "regression", ("binary",): "binary-classification"}.get(m.task_types,
                                                                                        "classification")
        raise TaskError(f"metric {m.title} is a {kind} metric but the task is {ttype}; pass a metric that "
                        f"fits ({', '.join(k for k, v in metrics.METRICS.items() if ttype in v.task_types)}) "
                        "or a different task_type.")

    if len(y) < MIN_TRAIN_ROWS:
        labelled = f" ({n_train_rows} rows, {len(y)} of them with a target value)" if len(y) < n_train_rows else ""
        raise TaskError(f"{train_file} has only {len(y)} rows with a value in {target!r}{labelled}; at least "
                        f"{MIN_TRAIN_ROWS} are needed: every model is scored on rows it was not trained on, and "
                        "with fewer rows that score is noise. Add training rows.")

    # --- classes and submission format ---
    classes: list[str] = []
    positive: str | None = None
    kind: SubmissionKind
    if ttype == "regression":
        kind = "value"
        if len(sample_pred) > 1:
            raise TaskError(f"{sample_file} has several prediction columns ({', '.join(sample_pred)}) but "
                            f"the target {target!r} is a single regression value; multi-target tasks are "
                            "not supported. Keep one prediction column.")
    else:
        classes = sorted_classes(label_str(v) for v in y.unique())
        if ttype == "binary":
            positive = classes[-1]
        if class_columns:
            mapped = _match_class_columns(sample_pred, classes)
            if mapped is None:
                raise TaskError(f"the prediction columns of {sample_file} ({', '.join(sample_pred)}) do not "
                                f"match the classes of {target!r} ({', '.join(classes)}); name one column "
                                "per class, e.g. class_<label>.")
            classes, kind = mapped, "proba_per_class"
        elif m.needs == "proba":
            if ttype == "binary":
                kind = "proba_positive"
            else:
                kind = "label" if sample is not None else "proba_per_class"
        else:
            kind = "label"
    if sample_cols is not None:
        submission_columns = sample_cols
    else:
        pred_cols = classes if kind == "proba_per_class" else [target]
        submission_columns = ([id_column] if id_column else []) + pred_cols

    # --- profiles ---
    feature_cols = [c for c in train_cols if c != target and (test_cols is None or c in test_cols)]
    profiles = [profile_column(c, train[c], id_column) for c in feature_cols]

    n_test = 0
    if test is not None:
        n_test = _count_rows(data_dir / test_file, str(test.columns[0])) if test_truncated else len(test)

    return Task(
        name=descriptive_name(name or default_name, target, ttype),
        description=desc_text,
        data_dir=data_dir,
        target=target,
        task_type=ttype,
        metric=metric_name,
        higher_is_better=m.higher_is_better,
        train_file=train_file,
        test_file=test_file,
        sample_submission_file=sample_file,
        id_column=id_column,
        submission_columns=submission_columns,
        submission_kind=kind,
        classes=classes,
        positive_class=positive,
        columns=profiles,
        other_files=other_files,
        n_train_rows=n_train_rows,
        n_test_rows=n_test,
        notes=notes,
        metric_defaulted=metric_defaulted,
    )


def _check_test_columns(train_cols: list[str], test_cols: list[str], target: str | None,
                        sample_id: str | None, train_file: str, test_file: str) -> None:
    """Reject a test file whose columns do not match the training file's.

    A test file that lacks some training columns and has nothing else is allowed (Kaggle tasks
    ship train-only columns such as bike sharing's casual/registered; they are simply not used as
    features). Sharing no feature column, or lacking columns while having others (renamed?), is
    an error: a model trained on one file could not predict the other. Id-like columns are left
    out of the comparison (an id usually differs between the files).
    """
    test_name, train_name = Path(test_file).name, Path(train_file).name

    def ignored(c: str) -> bool:
        return c == sample_id or c == target or _idlike_name(c)

    shared = [c for c in train_cols if c in test_cols and not ignored(c)]
    lacking = [c for c in train_cols if c not in test_cols and not ignored(c)]
    extra = [c for c in test_cols if c not in train_cols and not ignored(c)]
    # Without a given target, one of the columns the test file lacks is presumably the target.
    lacks_features = len(lacking) > (0 if target is not None else 1)
    if shared and not (extra and lacks_features):
        return
    if not shared and not lacking:
        return  # train has nothing but ids and the target: other checks say what is wrong
    target_note = "" if target is not None else " (one of them is presumably the target)"
    lacks = f"it lacks {_names(lacking)}{target_note}"
    has = f"has {_names(extra)}, which {train_name} lacks" if extra else "has no other column"
    lower = {c.lower(): c for c in lacking}
    renames = [f"{lower[m[0]]} → {c}" for c in extra
               if (m := difflib.get_close_matches(c.lower(), list(lower), n=1, cutoff=0.6))]
    hint = f" Renamed columns? {', '.join(renames)}." if renames else ""
    if not shared:
        raise TaskError(f"{test_name} shares no feature column with {train_name}: {lacks}, and {has}. A model "
                        f"trained on {train_name} cannot predict it; check that {test_name} is the test part of "
                        f"the same table, with the same column names.{hint}")
    raise TaskError(f"the columns of {test_name} do not match {train_name}: {lacks}, and {has}.{hint} Give "
                    f"{test_name} the same feature columns as {train_name} (only the target may be missing).")


def _derive_target(train_cols: list[str], test_cols: list[str] | None, sample_pred: list[str],
                   sample_id: str | None, desc: str, train_file: str, sample_file: str | None
                   ) -> tuple[str, list[str]]:
    """(target, notes): the column to predict, from the sample submission's prediction column, else the
    description, else the one column the test file lacks. Names match without case and punctuation
    ("SalePrice" is `sale_price`); whenever the sources disagree or a name had to be matched loosely, a note
    says which column was taken and why. A target the description names that is not a column is an error
    unless the sample submission settles it: another column is never picked silently."""
    def not_in_test(c: str) -> bool:
        return test_cols is None or c not in test_cols

    train_name = Path(train_file).name
    sample_name = Path(sample_file).name if sample_file else "the sample submission"
    candidates = [c for c in train_cols if not_in_test(c) and c != sample_id]
    pairs = [(c, match_column(c, [t for t in train_cols if not_in_test(t)])) for c in sample_pred]
    from_sample = [(c, t) for c, t in pairs if t is not None]
    if len(from_sample) > 1:
        raise TaskError(f"{sample_file} has several target columns ({', '.join(t for _, t in from_sample)}); this "
                        "tool predicts one target. Pass target=... (and a matching sample submission).")
    mention = _target_mention(desc, candidates)
    named = described_target(desc)
    notes: list[str] = []
    if from_sample:
        pred_col, target = from_sample[0]
        if pred_col != target:
            notes.append(f"{sample_name}'s prediction column `{pred_col}` is `{target}` in {train_name} (names "
                         f"compared without case and punctuation): `{target}` is the target, and the submission "
                         f"keeps the column name `{pred_col}`.")
        if mention is not None and mention[0] != target:
            notes.append(f"the description names `{mention[1]}` as the target, but {sample_name} predicts "
                         f"`{pred_col}`: the target is `{target}`, as the sample submission says; choose another "
                         "target column if that is wrong.")
        elif mention is None and named is not None and match_column(named, train_cols) is None:
            notes.append(f"the description names target `{named}`, which is not a column of {train_name} "
                         f"({_columns_and_closest(named, train_cols)}); the target is `{target}`, the prediction "
                         f"column of {sample_name}.")
        return target, notes
    # A single prediction column the training file lacks (renamed?): said, never silently replaced.
    unmatched = sample_pred[0] if len(sample_pred) == 1 else None
    sample_note = (f"{sample_name}'s prediction column `{unmatched}` is not a column of {train_name} "
                   f"({_columns_and_closest(unmatched, train_cols)})") if unmatched else ""
    if mention is not None:
        target, token = mention
        if token != target:
            notes.append(f"the description names `{token}` as the target; {train_name}'s column `{target}` is "
                         "taken to be it (names compared without case and punctuation).")
        if sample_note:
            notes.append(f"{sample_note}; the target is `{target}`, named in the description, and the submission "
                         f"keeps the column name `{unmatched}`.")
        return target, notes
    if named is not None and match_column(named, train_cols) is None:
        raise TaskError(f"the description names target `{named}`, which is not a column of {train_name} "
                        f"({_columns_and_closest(named, train_cols)}). Choose the column to predict with --target "
                        "<column> (the Target column menu in the app), or correct the description.")
    if test_cols is not None:
        only_train = [c for c in train_cols if c not in test_cols and not _idlike_name(c)]
        if len(only_train) == 1:
            if sample_note:
                notes.append(f"{sample_note}; the target is `{only_train[0]}`, the only column {train_name} has "
                             f"and the test file lacks; choose another target column if that is wrong.")
            return only_train[0], notes
    if sample_note:
        raise TaskError(f"{sample_note}, and nothing else says which column to predict. Choose it with --target "
                        "<column> (the Target column menu in the app), or name the sample submission's prediction "
                        "column like the target.")
    raise TaskError(
        f"cannot tell which column of {train_file} to predict. Name it with --target <column> (the Target "
        "column menu in the app; target=<column> in Python), add a "
        "sample_submission.csv whose prediction column is named like the target, or write "
        "'The target column is `<column>`' in description.md. Columns: "
        + ", ".join(train_cols[:30]) + (" ..." if len(train_cols) > 30 else "")
    )


def _chosen_target_notes(target: str, train_cols: list[str], test_cols: list[str] | None, sample_pred: list[str],
                         sample_id: str | None, desc: str, train_file: str, sample_file: str | None) -> list[str]:
    """What a target the user chose disagrees with: the sample submission's prediction column, the description."""
    train_name = Path(train_file).name
    notes: list[str] = []
    if len(sample_pred) == 1 and sample_pred[0] != target:
        sample_name = Path(sample_file).name if sample_file else "the sample submission"
        same = match_column(sample_pred[0], [target]) is not None
        notes.append(f"{sample_name}'s prediction column is `{sample_pred[0]}`, not `{target}`"
                     + (" (the same name without case and punctuation)" if same else "")
                     + f": the submission keeps the column name `{sample_pred[0]}` and holds the predictions of "
                     f"`{target}`.")
    named = described_target(desc)
    candidates = [c for c in train_cols if (test_cols is None or c not in test_cols) and c != sample_id]
    mention = _target_mention(desc, candidates) if named is None else None
    said = named or (mention[1] if mention else None)
    if said is not None and match_column(said, [target]) is None:
        where = "" if match_column(said, train_cols) else f", which is not a column of {train_name}"
        notes.append(f"the description names `{said}` as the target{where}; the target is `{target}`, as chosen.")
    return notes


def _derive_id(sample_id: str | None, frame: pd.DataFrame, target: str) -> str | None:
    if sample_id is not None and sample_id != target and _is_unique(frame[sample_id]):
        return sample_id
    cols = [str(c) for c in frame.columns if str(c) != target]
    # Exact "id" first, then other id-like names; each must identify rows uniquely.
    for c in sorted((c for c in cols if _idlike_name(c)), key=lambda c: (c.lower() != "id", cols.index(c))):
        if _is_unique(frame[c]):
            return c
    return None


# ----------------------------------------------------------------------------------------------
# describe_task
# ----------------------------------------------------------------------------------------------


def _names(cols: list[str], limit: int = 12) -> str:
    return ", ".join(cols[:limit]) + (f", ... (+{len(cols) - limit})" if len(cols) > limit else "")


_KIND_TEXT = {
    "label": "the predicted class label per row",
    "value": "the predicted value per row",
    "proba_positive": "the probability of the positive class per row",
    "proba_per_class": "one probability column per class, rows summing to 1",
}


def describe_task(task: Task) -> str:
    """A short summary for humans and LLM prompts: data, features by kind, target, metric, format."""
    m = metrics.get_metric(task.metric)
    kind_name = {"binary": "binary classification", "multiclass": "multiclass classification",
                 "regression": "regression"}[task.task_type]
    lines = [f"Task: {task.name} — {kind_name}; predict `{task.target}`."]
    data = f"Data: {Path(task.train_file).name} has {task.n_train_rows} rows"
    if task.test_file:
        data += f"; {Path(task.test_file).name} has {task.n_test_rows} rows"
    if task.other_files:
        data += f"; other files: {_names(task.other_files, 8)}"
    lines.append(data + ".")
    by_kind: dict[str, list[str]] = {}
    for c in task.columns:
        by_kind.setdefault(c.kind, []).append(c.name)
    lines.append(f"Features ({len(task.columns)}):")
    for k in ("numeric", "categorical", "boolean", "datetime", "text", "id", "constant"):
        if k in by_kind:
            lines.append(f"  - {k} ({len(by_kind[k])}): {_names(by_kind[k])}")
    missing = [f"{c.name} {c.missing_fraction:.0%}" for c in task.columns if c.missing_fraction > 0]
    if missing:
        lines.append(f"Missing values: {_names(missing)}.")
    high_card = [f"{c.name} ({c.n_unique})" for c in task.columns
                 if c.kind == "categorical" and c.n_unique > 50]
    if high_card:
        lines.append(f"High-cardinality categoricals: {_names(high_card)}.")
    lines.append("Target: " + _target_summary(task))
    direction = "higher is better" if m.higher_is_better else "lower is better"
    lines.append(f"Metric: {m.title} ({task.metric}; {direction}).")
    fmt = f"Submission: columns {', '.join(task.submission_columns)} — {_KIND_TEXT[task.submission_kind]}"
    if task.id_column:
        fmt += f", one row per `{task.id_column}` of the test set"
    else:
        fmt += ", rows in test-set order"
    lines.append(fmt + ".")
    return "\n".join(lines)


def _target_summary(task: Task) -> str:
    try:
        y = read_csv(task.data_dir / task.train_file, usecols=[task.target], nrows=PROFILE_ROWS)[task.target]
    except (TaskError, OSError):
        y = None
    if task.task_type == "regression":
        if y is None or not _is_numeric(y):
            return "numeric."
        d = y.describe()
        return (f"numeric; mean {d['mean']:.4g}, std {d['std']:.4g}, min {d['min']:.4g}, "
                f"median {d['50%']:.4g}, max {d['max']:.4g}.")
    text = f"{len(task.classes)} classes ({_names(task.classes, 10)})"
    if task.positive_class is not None:
        text += f", positive class {task.positive_class!r}"
    if y is not None and len(y.dropna()):
        shares = y.dropna().map(label_str).value_counts(normalize=True)
        text += "; distribution: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.head(10).items())
    return text + "."


# ----------------------------------------------------------------------------------------------
# extract_task_zip
# ----------------------------------------------------------------------------------------------

_MAX_RATIO = 200  # uncompressed:compressed beyond this, for a member over _RATIO_MIN_SIZE, is a bomb
_RATIO_MIN_SIZE = 1_000_000


def _safe_parts(name: str, archive: str) -> tuple[str, ...] | None:
    """The path components of a member, or None for entries to skip; raises on hostile names."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise TaskError(f"{archive} contains an absolute path ({name!r}), so it was rejected and nothing was "
                        "unpacked; zip the task folder with relative paths (from inside it: zip -r ../task.zip .).")
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise TaskError(f"{archive} contains a path that leaves the folder ({name!r}), so it was rejected and "
                        "nothing was unpacked; zip the task folder itself, with every path inside it.")
    if not parts or any(_is_hidden(p) for p in parts):
        return None
    return parts


def extract_task_zip(zip_path: str | Path, dest_dir: str | Path, max_total_bytes: int = 2_000_000_000,
                     max_files: int = 10_000) -> Path:
    """Safely unpack an uploaded task zip into dest_dir and return the folder for `load_task`.

    Every member is vetted before anything is written: no absolute or `..` paths, no symlinks,
    at most max_files files and max_total_bytes uncompressed, no extreme compression ratio.
    `__MACOSX/` and dotfiles are skipped; a single top-level folder is stripped.
    """
    zip_path, dest = Path(zip_path), Path(dest_dir)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise TaskError(f"{zip_path.name} is not a readable zip file ({e}); upload a .zip of the "
                        "task folder.") from None
    with zf:
        members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        total = 0
        for info in zf.infolist():
            parts = _safe_parts(info.filename, zip_path.name)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == stat.S_IFLNK:  # a link could point anywhere on the server
                raise TaskError(f"{zip_path.name} contains a symbolic link ({info.filename!r}), so it was "
                                "rejected and nothing was unpacked; zip the real files (zip without -y).")
            if parts is None or info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise TaskError(f"{info.filename!r} in {zip_path.name} is encrypted; upload an unencrypted zip.")
            members.append((info, parts))
            if len(members) > max_files:
                raise TaskError(f"{zip_path.name} holds more than {max_files} files; remove files the task "
                                "does not need.")
            total += info.file_size
            if total > max_total_bytes:
                raise TaskError(f"{zip_path.name} unpacks to more than {_fmt_bytes(max_total_bytes)} (the "
                                "limit), so it was rejected and nothing was unpacked; upload less data.")
            if info.file_size > _RATIO_MIN_SIZE and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise TaskError(f"{info.filename!r} in {zip_path.name} compresses {ratio:.0f}:1, which looks "
                                "like a zip bomb, so it was rejected and nothing was unpacked. If the data is "
                                "real, upload the CSV files themselves.")
        if not members:
            raise TaskError(f"{zip_path.name} contains no files.")
        # Strip one top-level folder when every file sits inside it.
        tops = {parts[0] for _, parts in members}
        strip = 1 if len(tops) == 1 and all(len(parts) > 1 for _, parts in members) else 0

        existed = dest.exists()
        if existed and (not dest.is_dir() or any(dest.iterdir())):
            raise TaskError(f"{dest} already exists and is not an empty folder; unpack into a new folder.")
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        try:
            for info, parts in members:
                target = root.joinpath(*parts[strip:]).resolve()
                if root not in target.parents:
                    raise TaskError(f"{zip_path.name}: member {info.filename!r} would land outside the folder.")
                target.parent.mkdir(parents=True, exist_ok=True)
                # Count real bytes: headers can lie about sizes.
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise TaskError(f"{zip_path.name} unpacks to more than "
                                            f"{_fmt_bytes(max_total_bytes)} (the limit), so it was rejected; "
                                            "upload less data.")
                        out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            _cleanup(dest, existed)
            raise TaskError(f"{zip_path.name} could not be unpacked ({e}); re-create the zip.") from None
        except TaskError:
            _cleanup(dest, existed)
            raise
    return dest


def _cleanup(dest: Path, existed: bool) -> None:
    """Undo a failed extraction: dest was missing or empty before, so everything in it is ours."""
    if not existed:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
