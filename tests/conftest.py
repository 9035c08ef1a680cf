"""A micro workspace shared by the tests that need a pipeline's outputs (session scope: the
expensive stages run once)."""
import pytest

from micro import micro_config, stage_ok
from tgo.runs import STAGES

PIPELINE = ("prepare", "train", "extract", *STAGES)  # every stage of one model, in order
# The longest files first, so that with one worker per core (make test) the workers finish together.
LONGEST = ("test_zoo.py", "test_pipeline.py", "test_robustness.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in LONGEST)  # a stable sort: files stay whole


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A micro workspace after every stage but the report, with the unmodified micro config."""
    root = tmp_path_factory.mktemp("workspace")
    params = micro_config()
    for stage in PIPELINE:
        stage_ok(stage, root, params)
    return root
