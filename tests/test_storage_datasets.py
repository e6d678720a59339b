"""The model store's published marker and history (jobs/storage/datasets.py)."""
import pytest

from jobs.storage import io
from jobs.storage.datasets import Datasets


def test_previous_is_the_latest_earlier_published_model(tmp_path):
    models = Datasets(str(tmp_path)).models
    for day in ("2026-03-05", "2026-03-07", "2026-03-08", "2026-03-12"):
        io.write_json(f"{models.path(day)}/model.json", {"model_version": f"v-{day}"})
    for day in ("2026-03-05", "2026-03-07", "2026-03-12"):
        models.mark_published(day)
    found = models.latest_published_before("2026-03-10")  # 03-08 is not published, 03-12 is later
    assert (found["run_date"], found["model_version"], found["evaluation"]) == ("2026-03-07", "v-2026-03-07", None)
    assert models.latest_published_before("2026-03-05") is None
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        models.mark_published("2026-03-01")


def test_a_missing_partition_names_the_dataset_date_and_path(tmp_path):
    data = Datasets(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no candidates for 2026-03-01 at .*candidates/dt=2026-03-01"):
        data.candidates.read_arrow("2026-03-01")


def test_an_empty_partition_reads_as_an_empty_table_of_its_schema(tmp_path):
    data = Datasets(str(tmp_path))
    with io.atomic_dir(data.holdout_test.path("2026-03-01")) as tmp:
        fs, folder = io.fs_for(tmp)
        fs.makedirs(folder, exist_ok=True)
        fs.touch(f"{folder}/_SUCCESS")
    table = data.holdout_test.read_arrow("2026-03-01")
    assert table.num_rows == 0 and table.column_names == ["person_id", "item_id"]
