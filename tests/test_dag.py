import pytest


@pytest.mark.airflow
def test_dag_imports_light_and_lists_every_stage(airflow_db):
    import subprocess
    import sys

    # parse-time imports stay light: no pyspark/implicit/scann/GX at DAG import
    code = ("import sys, runpy; runpy.run_path('dags/nightly_recommendations.py');"
            "heavy=[m for m in ('pyspark','implicit','scann','great_expectations') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"

    from airflow.dag_processing.dagbag import DagBag

    from jobs.pipeline import STAGES

    bag = DagBag(dag_folder="dags")
    assert bag.import_errors == {}
    dag = bag.get_dag("nightly_recommendations")
    assert [t for t in dag.task_ids if t not in ("resolve_run_date", "purge", "ab_report", "report")] == list(STAGES)
    assert dag.get_task("publish").upstream_task_ids == {"rank"}
    assert dag.get_task("purge").upstream_task_ids == {STAGES[-1]}  # retention runs after the last stage
    # the night's page: after every stage whatever became of it, and a leaf, so a failed stage fails the run
    # the A/B readout after publish, before the page that links it
    assert dag.get_task("ab_report").upstream_task_ids == {STAGES[-1]}
    report = dag.get_task("report")
    assert report.upstream_task_ids == {"resolve_run_date", "ab_report", *STAGES} and report.trigger_rule == "all_done"
    assert report.downstream_task_ids == set()


@pytest.mark.airflow
def test_a_failed_stage_fails_the_run_and_the_report_task_still_writes_the_page(airflow_db, tmp_path, monkeypatch):
    """A stage raising inside the DAG: the run fails, and `report` writes the summary and the page naming it."""
    import json

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState, TaskInstanceState

    import jobs.spark
    import jobs.stages.validate as validate

    from quality import QualityGateError

    def broken(spark, cfg, run_date):  # a verdict on the day: failed at once, not retried
        raise QualityGateError([{"message": "raw events <missing> for the night"}])

    monkeypatch.setattr(validate, "run", broken)
    monkeypatch.setattr(jobs.spark, "spark_session", lambda *a, **k: object())  # the stage fails before Spark work
    dag = DagBag(dag_folder="dags").get_dag("nightly_recommendations")
    root = tmp_path / "data"
    run = dag.test(run_conf={"data_root": str(root), "ds": "2026-08-14"})
    assert run.state == DagRunState.FAILED
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert (states["validate"], states["stitch"], states["report"]) == (
        TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED, TaskInstanceState.SUCCESS)
    reports = root / "reports" / "dt=2026-08-14"
    summary = json.loads((reports / "run_summary.json").read_text())
    assert (summary["status"], summary["failed_stage"]) == ("failed", "validate")
    page = (reports / "index.html").read_text()
    assert "Stage <b>validate</b> failed (QualityGateError)" in page and "raw events &lt;missing&gt;" in page


@pytest.mark.airflow
def test_every_task_retries_with_backoff_but_a_verdict_fails_at_once(airflow_db):
    import datetime as dt

    from airflow.dag_processing.dagbag import DagBag

    from jobs.pipeline import is_verdict
    from jobs.stages.gate import ModelGateError
    from quality import QualityGateError

    dag = DagBag(dag_folder="dags").get_dag("nightly_recommendations")
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff > 1 and task.retry_delay >= dt.timedelta(minutes=1), task.task_id
    assert is_verdict(QualityGateError([])) and is_verdict(ModelGateError("below popularity"))
    assert not is_verdict(OSError("disk full")) and not is_verdict(RuntimeError("executor lost"))


@pytest.mark.airflow
def test_nights_run_one_after_the_other_in_date_order(airflow_db):
    """Scheduled runs one at a time; every run's first task waits, without holding a worker slot, for the run before
    it, and depends on its past, so Airflow refuses a reverse backfill; the stages do not (a failed night must not
    stop the nights after it). The waiting itself runs in tests/test_dag_backfill.py's real scheduler."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.backfill import InvalidBackfillDirection, _validate_backfill_params

    dag = DagBag(dag_folder="dags").get_dag("nightly_recommendations")
    resolve = dag.get_task("resolve_run_date")
    assert dag.max_active_runs == 1
    assert (resolve.mode, resolve.depends_on_past, resolve.poke_interval) == ("reschedule", True, 60)
    assert [t.task_id for t in dag.tasks if t.depends_on_past] == ["resolve_run_date"]
    # the check `airflow backfill create` makes before it creates runs: with --run-backwards it refuses
    with pytest.raises(InvalidBackfillDirection):
        _validate_backfill_params(dag, True, pendulum.datetime(2026, 8, 4), pendulum.datetime(2026, 8, 10), None, None)
