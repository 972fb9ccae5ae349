"""The experiment engine: typed studies, conditions as data, vectorised trials, a SQLite store.

Example:
    >>> import tempfile
    >>> from polarnet.experiments import load_study, run_study, load_results
    >>> study = load_study("xor5d", ["trials=2", "epochs=3", "sizes=[8]"])
    >>> folder = tempfile.mkdtemp()
    >>> _ = run_study(study, folder, progress=False)
    >>> len(load_results(folder))  # one row per run and epoch
    18
"""

from .conditions import CONDITIONS, Condition, register_condition
from .config import Study, expand_learners, list_presets, load_study
from .cost import estimate_cost
from .plan import RunSpec, plan
from .store import Store, StoreError, StudyMismatch
from .sweep import Interrupted, SweepSummary, run_study

__all__ = ["Study", "load_study", "expand_learners", "list_presets", "Condition", "CONDITIONS", "register_condition", "RunSpec", "plan",
           "estimate_cost", "Store", "StoreError", "StudyMismatch", "run_study", "SweepSummary", "Interrupted",
           "load_results"]


def load_results(folder):
    """Every epoch of every run in a study folder, with the run's grid point, as a DataFrame.

    Opens the store read-only: works on a read-only folder, and never changes the file.

    Raises:
        StoreError: the folder holds no store, or the store is damaged.
    """
    with Store.existing(folder) as store:
        return store.epochs()
