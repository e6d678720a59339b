"""`recs purge`: partitions older than the retention go, newer ones and what the live lists need stay."""
import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

RUN_DATE = "2026-03-31"
DAYS = [(dt.date(2026, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(31)]  # 03-01 .. 03-31
LIVE = "2026-03-10"  # the live key-value version is old: its partitions must survive
PUBLISHED = "2026-03-05"  # the last model with a PUBLISHED marker


def _part(root, rel, ds, name="part-00000.parquet"):
    folder = root / rel / f"dt={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"person_id": [f"p-{ds}"], "n": [1]}), folder / name)
    return folder


@pytest.fixture
def root(tmp_path):
    for ds in DAYS:
        for rel in ("quarantine/events", "validated/events", "validated/profiles", "interactions", "persons",
                    "candidates", "staging/recommendations", "recommendations", "identity", "raw/events",
                    "raw/profiles", "raw/catalog", "truth/defects", "some_future_dataset"):
            _part(tmp_path, rel, ds)
        (tmp_path / "holdout" / f"dt={ds}" / "train").mkdir(parents=True)
        pq.write_table(pa.table({"person_id": ["p"]}), tmp_path / "holdout" / f"dt={ds}" / "train" / "p.parquet")
        (tmp_path / "reports" / f"dt={ds}").mkdir(parents=True)
        (tmp_path / "reports" / f"dt={ds}" / "run_summary.json").write_text("{}")
    for ds in ("2026-03-01", "2026-03-05", "2026-03-08"):  # models; 03-08 never published
        m = tmp_path / "models" / f"dt={ds}"
        m.mkdir(parents=True)
        (m / "model.json").write_text("{}")
        if ds <= PUBLISHED:
            (m / "PUBLISHED").write_text("{}")
    for ds in ("2026-03-02", "2026-03-09"):  # identity state: the latest is what the next stitch starts from
        (tmp_path / "state" / "identity" / f"dt={ds}" / "nodes").mkdir(parents=True)
        (tmp_path / "state" / "identity" / f"dt={ds}" / "days.json").write_text("[]")
    kv = tmp_path / "exports" / "kv"
    (kv / "versions" / f"{LIVE}-abcdef12").mkdir(parents=True)
    (kv / "versions" / f"{LIVE}-abcdef12" / "store.sqlite").write_bytes(b"")
    (kv / "CURRENT").write_text(json.dumps({"version": f"{LIVE}-abcdef12", "previous": None}))
    (tmp_path / "privacy").mkdir()
    (tmp_path / "privacy" / "erasures.jsonl").write_text("")
    return tmp_path


def _dates(root, rel):
    return sorted(p.name[3:] for p in (root / rel).iterdir() if p.name.startswith("dt="))


def _purge(root, *extra):
    from jobs.cli import main

    return main(["purge", "--data-root", str(root), "--date", RUN_DATE, "--set", "privacy.retention_days=14", *extra])


def test_dry_run_lists_and_removes_nothing(root, capsys):
    before = sorted(str(p) for p in root.rglob("*"))
    assert _purge(root, "--dry-run", "--json") == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert "would remove" in out and summary["dry_run"] and summary["cutoff"] == "2026-03-17"
    assert summary["removed"]["quarantine/events"]["partitions"] == 16  # 03-01 .. 03-16
    assert summary["bytes"] > 0 and summary["files"] > summary["partitions"]
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_old_partitions_go_newer_and_protected_ones_stay(root, capsys):
    assert _purge(root, "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = [d for d in DAYS if d >= "2026-03-17"]
    for rel in ("quarantine/events", "validated/events", "validated/profiles", "interactions", "persons", "candidates",
                "staging/recommendations", "holdout", "reports", "some_future_dataset"):
        assert _dates(root, rel) == kept, rel
    # the live key-value version's identity map and lists, whatever their age
    assert _dates(root, "identity") == [LIVE, *kept] and _dates(root, "recommendations") == [LIVE, *kept]
    assert _dates(root, "models") == [PUBLISHED]  # the last published model; an unpublished newer one is old too
    assert _dates(root, "state/identity") == ["2026-03-09"]  # the latest state
    # raw inputs belong to the shop, truth/ is test ground truth, exports/ and privacy/ prune themselves
    for rel in ("raw/events", "raw/profiles", "raw/catalog", "truth/defects"):
        assert _dates(root, rel) == DAYS, rel
    assert (root / "exports" / "kv" / "versions" / f"{LIVE}-abcdef12" / "store.sqlite").exists()
    assert (root / "privacy" / "erasures.jsonl").exists()
    assert {k["path"].split(str(root))[-1] for k in summary["kept_protected"]} == {
        f"/identity/dt={LIVE}", f"/recommendations/dt={LIVE}", f"/models/dt={PUBLISHED}", "/state/identity/dt=2026-03-09"}
    assert not [p for p in root.rglob(".purge-*")]  # nothing hidden left behind
    assert summary["partitions"] == sum(e["partitions"] for e in summary["removed"].values())


def test_purge_raw_removes_personal_raw_inputs_only(root):
    assert _purge(root, "--set", "privacy.purge_raw=true") == 0
    kept = [d for d in DAYS if d >= "2026-03-17"]
    assert _dates(root, "raw/events") == kept and _dates(root, "raw/profiles") == kept
    assert _dates(root, "raw/catalog") == DAYS  # the catalog is no personal data


def test_a_second_purge_finds_nothing_and_sweeps_leftovers(root):
    from jobs.privacy.retention import purge

    purge(str(root), RUN_DATE, retention_days=14)
    (root / "persons" / ".purge-dt=2026-01-01-deadbeef").mkdir()  # an interrupted earlier purge
    again = purge(str(root), RUN_DATE, retention_days=14)
    assert again["partitions"] == 0 and again["leftovers_swept"] == 1


def test_plan_and_cutoff_are_pure():
    from jobs.privacy.retention import Partition, cutoff_date, plan_purge

    assert cutoff_date("2026-03-31", 90) == "2025-12-31"
    with pytest.raises(ValueError):
        cutoff_date("2026-03-31", 0)
    parts = [Partition("x", d, f"/r/x/dt={d}") for d in ("2025-12-30", "2025-12-31", "2026-01-01")]
    doomed, kept = plan_purge(parts, "2025-12-31", {"/r/x/dt=2025-12-30": "live"})
    assert doomed == [] and [p.ds for p in kept] == ["2025-12-30"]
    doomed, _ = plan_purge(parts, "2026-01-01", {})
    assert [p.ds for p in doomed] == ["2025-12-30", "2025-12-31"]


def test_default_retention_is_90_days_and_raw_is_kept():
    from jobs.config import load_config

    cfg = load_config()
    assert cfg.privacy.retention_days == 90 and cfg.privacy.purge_raw is False
    assert cfg.privacy.retention_days >= cfg.window_days  # a run never misses a day of its window
