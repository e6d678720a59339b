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
    assert [t for t in dag.task_ids if t not in ("resolve_run_date", "purge")] == list(STAGES)
    assert dag.get_task("publish").upstream_task_ids == {"rank"}
    assert dag.get_task("purge").upstream_task_ids == {STAGES[-1]}  # retention runs after the last stage


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
