"""Erasing ids from the files under DATA_ROOT, whatever dataset they belong to.

The tree is walked, not listed from a catalog of datasets, so a dataset added later is covered without a change:
- Parquet files (`*.parquet`): every text column of every file is checked (`IdMatcher.table_mask`); a folder with a
  matching row is rebuilt whole in a hidden sibling (matching rows dropped, other files and markers copied, the
  dropped files' Hadoop `.crc` checksums left out) and swapped in with `jobs.storage.io.atomic_dir`;
- JSON Lines (`*.jsonl`, `*.jsonl.gz`, raw inputs): lines holding an id are dropped, the folder swapped the same way;
- other text files (JSON and HTML reports, markers, pointers): each id is replaced by `<erased>` (`&lt;erased&gt;`
  in HTML), written to a temporary file and renamed over the old one. Binary files (fonts, images) are skipped.
Skipped folders: `truth/` (a generated shop's test ground truth), `privacy/` (the erasure log), `exports/` (the
key-value versions, handled by `jobs.privacy.stores`) and hidden temporaries.
"""
from __future__ import annotations

import gzip
import json
import posixpath
import uuid
from collections import defaultdict

import pyarrow.parquet as pq

from jobs.privacy.matching import ERASED, IdMatcher
from jobs.storage import io

SKIP_TOP = ("truth", "privacy", "exports")
JSONL = (".jsonl", ".jsonl.gz")
BINARY = (".parquet", ".sqlite", ".crc", ".gz", ".otf", ".ttf", ".woff", ".woff2", ".png", ".gif", ".ico", ".jpg")
MAX_TEXT_BYTES = 64 * 1024 * 1024


def walk_files(root: str) -> list[str]:
    """Every file under `root` that erasure covers (see the module docstring), sorted."""
    fs, base = io.fs_for(root)
    base = base.rstrip("/")
    out = []
    for f in fs.find(base):
        rel = f[len(base):].lstrip("/").split("/")
        if rel[0] in SKIP_TOP or any(part.startswith((".tmp-", ".old-", ".purge-")) for part in rel[:-1]):
            continue
        out.append(f)
    return sorted(out)


def _parquet_rewrite(fs, path: str, matcher: IdMatcher):
    """(new table, rows dropped, INT96 file?) or None when the file holds no id."""
    with fs.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        int96 = any(c.physical_type == "INT96" for c in pf.schema)
        table = pf.read()
    mask = matcher.table_mask(table)
    if mask is None:
        return None
    hits = int(mask.true_count) if hasattr(mask, "true_count") else sum(mask.to_pylist())
    if not hits:
        return None
    import pyarrow.compute as pc

    return table.filter(pc.invert(mask)), hits, int96


def _jsonl_rewrite(fs, path: str, matcher: IdMatcher):
    """(new bytes, lines dropped) or None."""
    with fs.open(path, "rb") as fh:
        data = fh.read()
    gz = path.endswith(".gz")
    text = (gzip.decompress(data) if gz else data).decode("utf-8")
    kept, dropped = [], 0
    for line in text.splitlines(keepends=True):
        try:
            hit = matcher.record(json.loads(line)) if line.strip() else False
        except ValueError:
            hit = matcher.replace_text(line)[1] > 0  # not JSON: drop it if it names an id anywhere
        if hit:
            dropped += 1
        else:
            kept.append(line)
    if not dropped:
        return None
    out = "".join(kept).encode("utf-8")
    return (gzip.compress(out, mtime=0) if gz else out), dropped


def _protocol_prefix(root: str) -> str:
    """`s3a://` for `s3a://bucket/recs` (fsspec paths drop it), "" for a local folder."""
    _, base = io.fs_for(root)
    return root[: root.find(base)] if base and root.find(base) > 0 else ""


def _swap_folder(fs, folder: str, replacements: dict[str, object], prefix: str = "") -> None:
    """Rebuilds `folder` with `replacements` {file name: pyarrow (table, int96) | bytes}, everything else copied."""
    with io.atomic_dir(prefix + folder, keep_displaced=False) as tmp:  # no copy of erased rows stays
        _, tmp_p = io.fs_for(tmp)
        fs.makedirs(tmp_p, exist_ok=True)
        for entry in fs.ls(folder, detail=False):
            name = posixpath.basename(entry.rstrip("/"))
            target = posixpath.join(tmp_p, name)
            if name in replacements:
                new = replacements[name]
                with fs.open(target, "wb") as fh:
                    if isinstance(new, bytes):
                        fh.write(new)
                    else:
                        table, int96 = new
                        pq.write_table(table, fh, compression="snappy", use_deprecated_int96_timestamps=int96)
            elif name.startswith(".") and name.endswith(".crc") and name[1:-4] in replacements:
                continue  # a stale checksum would make Hadoop readers reject the rewritten file
            else:
                fs.copy(entry, target, recursive=True)


def erase_data_files(root: str, matcher: IdMatcher, files: list[str] | None = None) -> dict:
    """Drops the rows holding an id from every Parquet and JSON Lines file; returns counts."""
    fs, _ = io.fs_for(root)
    files = walk_files(root) if files is None else files
    by_folder: dict[str, dict[str, object]] = defaultdict(dict)
    counts = {"parquet_files_scanned": 0, "parquet_files_rewritten": 0, "parquet_rows_removed": 0,
              "jsonl_files_rewritten": 0, "jsonl_rows_removed": 0, "folders_replaced": 0}
    for f in files:
        name = posixpath.basename(f)
        if name.startswith((".", "_")):
            continue
        if name.endswith(".parquet"):
            counts["parquet_files_scanned"] += 1
            result = _parquet_rewrite(fs, f, matcher)
            if result:
                table, hits, int96 = result
                by_folder[posixpath.dirname(f)][name] = (table, int96)
                counts["parquet_files_rewritten"] += 1
                counts["parquet_rows_removed"] += hits
        elif name.endswith(JSONL):
            result = _jsonl_rewrite(fs, f, matcher)
            if result:
                by_folder[posixpath.dirname(f)][name] = result[0]
                counts["jsonl_files_rewritten"] += 1
                counts["jsonl_rows_removed"] += result[1]
    for folder, replacements in sorted(by_folder.items()):
        _swap_folder(fs, folder, replacements, _protocol_prefix(root))
        counts["folders_replaced"] += 1
    return counts


def erase_text_files(root: str, matcher: IdMatcher, files: list[str] | None = None) -> dict:
    """Replaces every id in text files (reports, markers) by `<erased>`; returns counts."""
    fs, _ = io.fs_for(root)
    files = walk_files(root) if files is None else files
    counts = {"text_files_rewritten": 0, "text_replacements": 0}
    for f in files:
        name = posixpath.basename(f)
        if name.endswith(BINARY) or name.endswith(JSONL) or fs.info(f).get("size", 0) > MAX_TEXT_BYTES:
            continue
        with fs.open(f, "rb") as fh:
            data = fh.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # binary
        html = name.endswith((".html", ".htm"))
        new, n = matcher.replace_text(text, "&lt;erased&gt;" if html else ERASED)
        if n:
            tmp = posixpath.join(posixpath.dirname(f), f".tmp-{name}-{uuid.uuid4().hex[:8]}")
            with fs.open(tmp, "wb") as fh:
                fh.write(new.encode("utf-8"))
            fs.mv(tmp, f)
            counts["text_files_rewritten"] += 1
            counts["text_replacements"] += n
    return counts
