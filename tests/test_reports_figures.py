"""jobs.reports.figures: a night's figures from what its stages wrote, and the trend across nights with gaps."""
import pytest

from jobs.reports.figures import night_figures, trend_figures
from jobs.storage.datasets import Datasets
from night_reports import write_night

D = "2026-08-14"


@pytest.fixture
def data(tmp_path):
    return Datasets(str(tmp_path / "data"))


def test_a_published_night_has_every_section(data):
    write_night(data.layout.root, D, adopted=True)
    f = night_figures(data, D)
    assert f["status"] == "published" and f["failure"] is None
    assert [s["status"] for s in f["stages"]] == ["ok"] * 9 and f["stages"][0] == {
        "stage": "validate", "status": "ok", "seconds": 10.0}
    assert f["volumes"]["devices"]["ios"] == 300 and f["volumes"]["event_types"]["purchase"] == 60
    assert f["quarantine"]["reasons"]["events"] == {"bad_price": 4, "unknown_item": 9}
    assert f["quarantine"]["quarantined"] == {"catalog": 1, "events": 13}
    assert (f["identity"]["merges"], f["identity"]["shared_devices"]) == (3, 4)
    assert f["gate"]["verdict"] == "pass" and f["gate"]["metrics"]["model"]["ndcg_at_k"] == pytest.approx(0.21)
    assert f["tuning"]["adopted"] and len(f["tuning"]["trials"]) == 12
    assert f["coverage"]["exposure_gini"] == pytest.approx(0.51) and f["coverage"]["lists_from"] == "model"


def test_a_failed_night_names_the_stage_and_leaves_out_what_did_not_run(data):
    write_night(data.layout.root, D, fail_at="train")
    f = night_figures(data, D)
    assert f["status"] == "failed"
    assert f["failure"]["stage"] == "train" and "volume_vs_median_7d" in f["failure"]["error"]
    assert {s["stage"]: s["status"] for s in f["stages"]}["gate"] == "not run"
    assert f["identity"] is not None and f["tuning"] is not None  # before the failure
    assert f["gate"] is None and f["coverage"] is None  # not tonight's, even though older files could exist


def test_a_night_that_failed_validation_takes_its_volumes_from_the_validation_report(data):
    write_night(data.layout.root, D, fail_at="validate")  # the day's validated folder (and marker) is removed
    f = night_figures(data, D)
    assert f["failure"]["stage"] == "validate" and f["validation"]["passed"] is False
    assert f["volumes"]["rows"] == 1000 and f["validation"]["failures"][0].startswith("events dt=")


def test_figures_left_by_an_earlier_attempt_are_not_tonights(data):
    """A night published once, then re-run and failed at validate: the old gate report is still on disk."""
    write_night(data.layout.root, D)
    write_night(data.layout.root, D, fail_at="validate")
    f = night_figures(data, D)
    assert f["gate"] is None and f["tuning"] is None and f["identity"] is None


def test_a_night_without_reports_is_none(data):
    assert night_figures(data, D) is None


def test_trend_marks_missing_and_unreadable_nights_as_gaps(data, caplog):
    for ds, scale in (("2026-08-10", 0.5), ("2026-08-12", 0.8), ("2026-08-13", 0.9)):
        write_night(data.layout.root, ds, scale=scale)
    # 2026-08-11: no reports at all; 2026-08-13: a run summary that is not JSON
    with open(f"{data.layout.reports('2026-08-13')}/run_summary.json", "w") as f:
        f.write("{not json")
    write_night(data.layout.root, D)
    tonight = night_figures(data, D)
    trend = trend_figures(data, tonight, 5)
    assert [ds for ds, _ in trend] == ["2026-08-10", "2026-08-11", "2026-08-12", "2026-08-13", D]
    assert [f is None for _, f in trend] == [False, True, False, True, False]
    assert trend[-1][1] is tonight and trend[0][1]["volumes"]["rows"] == 500
    assert "2026-08-13" in caplog.text and "gap" in caplog.text


def test_a_night_whose_first_stage_left_no_record_shows_no_old_figures(data):
    """An attempt killed before validate finished: the validation report on disk is an earlier attempt's."""
    import json

    write_night(data.layout.root, D)
    path = f"{data.layout.reports(D)}/run_summary.json"
    summary = json.loads(open(path).read())
    summary.update(status="incomplete", failed_stage="validate",
                   stage_status={s: "not run" for s in summary["stage_status"]})
    with open(path, "w") as f:
        json.dump(summary, f)
    f = night_figures(data, D)
    assert f["status"] == "incomplete" and f["failure"]["stage"] == "validate"
    assert (f["volumes"], f["quarantine"], f["validation"], f["gate"], f["coverage"]) == (None,) * 5
