"""A micro workspace shared by the tests that need a pipeline's outputs (session scope: the
expensive stages run once)."""
import pytest

from micro import micro_config, stage_ok
from tgo.runs import STAGES

PIPELINE = ("prepare", "train", "extract", *STAGES)  # every stage of one model, in order
# The longest files first, longest first (seconds on 2 cores: 220, 160, 95, 85, 75, 70, 60), so that
# with one worker per core (make test: --dist loadfile --no-loadscope-reorder, which keeps this order)
# the workers finish together.
LONGEST = ("test_pipeline.py", "test_robustness.py", "test_gpu_check.py", "test_zoo.py", "test_external.py",
           "test_resume.py", "test_errors.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if "workspace" in getattr(item, "fixturenames", ()):
            item.add_marker("pipeline")  # `make mutation` leaves these out: they run the stages
    # A stable sort: files stay whole, the others in collection order.
    items.sort(key=lambda item: LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A micro workspace after every stage but the report, with the unmodified micro config."""
    root = tmp_path_factory.mktemp("workspace")
    params = micro_config()
    for stage in PIPELINE:
        stage_ok(stage, root, params)
    return root
