"""`recs forget`: an erasure request, end to end.

1. resolve every id of the person (`jobs.privacy.resolve`): user_ids, anonymous_ids, email hashes, person ids;
2. drop their rows from every Parquet and JSON Lines file under DATA_ROOT, raw inputs included (`files`);
3. delete them from every key-value version, embedded and Redis (`stores`);
4. replace them by `<erased>` in reports and other text files (`files`);
5. append an entry to `DATA_ROOT/privacy/erasures.jsonl`: a salted hash of the user id, the time and the counts, never
   an id. The salt is `DATA_ROOT/privacy/salt`, made on first use; with it one can later answer "was this user
   erased?" without the log naming anyone.
Not touched: `truth/` (test ground truth of generated shops) and aggregates that hold no id (item factors, segment
lists, counts in reports). Run it while no nightly run writes; the next run re-validates the raw days it changed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import time

from jobs.privacy import files, stores
from jobs.privacy.matching import IdMatcher
from jobs.privacy.resolve import resolve_subject
from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)


def _privacy_dir(root: str) -> str:
    return f"{root.rstrip('/')}/privacy"


def salt(root: str) -> str:
    """The DATA_ROOT's erasure-log salt (created, readable by the owner only, on first use)."""
    fs, p = io.fs_for(f"{_privacy_dir(root)}/salt")
    if fs.exists(p):
        with fs.open(p, "r") as f:
            return f.read().strip()
    fs.makedirs(_privacy_dir(io.fs_for(root)[1]), exist_ok=True)
    value = secrets.token_hex(16)
    with fs.open(p, "w") as f:
        f.write(value + "\n")
    try:
        fs.chmod(p, 0o600)
    except (AttributeError, NotImplementedError, OSError):
        pass
    return value


def subject_hash(root: str, user_id: str) -> str:
    return hashlib.sha256(f"{salt(root)}:{user_id}".encode()).hexdigest()


def append_log(root: str, entry: dict) -> str:
    """Appends one JSON line to `privacy/erasures.jsonl` (rewritten whole and renamed, so it works on object stores)."""
    path = f"{_privacy_dir(root)}/erasures.jsonl"
    io.append_line(path, json.dumps(entry, sort_keys=True))
    return path


def forget(root: str, user_id: str, *, anonymous_ids=(), email_hashes=(), redis_url: str = "") -> dict:
    """Removes every trace of the person behind `user_id` (and the given ids) from DATA_ROOT and Redis.

    Returns the counts recorded in the erasure log: `ids` and `persons` resolved, Parquet/JSON Lines rows removed,
    key-value rows and Redis fields removed, text replacements, `seconds`, and `log` (the log's path).
    """
    if not user_id:
        raise ValueError("forget needs a user_id")
    started = time.time()
    subject = resolve_subject(root, user_id, anonymous_ids, email_hashes)
    matcher = IdMatcher(subject.all_ids())
    # folders displaced by recent replacements are kept a while for readers (io.replace_dir); they hold the
    # person's rows too, so they go now (`recs forget` holds the DATA_ROOT lock: no writer owns a temporary)
    io.clean_leftovers(root, grace_seconds=0)
    counts = {"ids": len(subject.ids), "persons": len(subject.person_ids)}
    counts.update(files.erase_data_files(root, matcher))
    counts.update(stores.erase_sqlite(Layout(root).kv(), matcher))
    if redis_url:
        counts.update(stores.erase_redis(redis_url, matcher))
    counts.update(files.erase_text_files(root, matcher))
    counts["seconds"] = round(time.time() - started, 1)
    entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "subject_sha256": subject_hash(root, user_id), "redis": bool(redis_url), "counts": counts}
    log_path = append_log(root, entry)
    log.info("erasure done: %s", counts)
    return {**counts, "log": log_path, "subject_sha256": entry["subject_sha256"]}


def was_erased(root: str, user_id: str) -> list[dict]:
    """The erasure log's entries for `user_id` (matched through its salted hash)."""
    path = f"{_privacy_dir(root)}/erasures.jsonl"
    fs, p = io.fs_for(path)
    if not fs.exists(p):
        return []
    digest = subject_hash(root, user_id)
    with fs.open(p, "r") as f:
        return [e for e in map(json.loads, f) if e.get("subject_sha256") == digest]
