"""Training on a Dask cluster (`compute: dask`, nextbest/distributed.py): the same study and recipe, spread out.

- The Optuna trials run on the cluster's workers, one task per trial, all on ONE study: the configured RDB study
  (PostgreSQL: every worker writes its trials there) or, for the embedded SQLite study, an
  `optuna_integration.DaskStorage` around it that lives on the scheduler (a LocalCluster's, in this process, so
  the study is the same SQLite file the local path uses; a remote cluster's workers cannot share a SQLite file,
  so a remote scheduler needs a PostgreSQL study). Each worker builds the tuning matrices once per study from
  the rows sent to it once (`scatter(broadcast=True)`), and each task samples with its own TPE seed and the
  constant liar, so concurrent trials do not propose the same point. The first trial of a fresh study is still
  XGBoost's defaults (enqueued here, taken by whichever worker asks first). The trial callbacks (MLflow nested
  runs, the progress bar) run here as each trial finishes, in finishing order.
- The recipe's two boosters (the early-stopped one and the refit) are fitted by `xgboost.dask` on
  `DaskQuantileDMatrix`es built from dask dataframes of the rows (one partition per worker): data-parallel
  `hist` training whose histograms are all-reduced across workers. The quantile sketch is merged across
  partitions and row subsampling draws per worker, so the trees are not bit-identical to the single-process fit;
  the model's metrics agree within a tolerance (tests/test_distributed.py). Calibration and evaluation stay here
  (they read the early-stopped booster's margins of the validation rows, as on the local path).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nextbest.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    import xgboost as xgb
    from distributed import Client

    from nextbest.models.calibration import CalibrationMethod
    from training.recipe import RecipeFit, Rows
    from training.tune import TrialCallback, TuningConfig, TuningData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _StudyTask:
    """What every trial task needs: the rows (sent to each worker once), the study and the tuning knobs."""

    token: str
    train: Rows
    valid: Rows
    feature_names: list[str]
    study_name: str
    storage: str  # a URI, or "dask-storage:<name>" (the DaskStorage on the scheduler, rebuilt on the worker)
    seed: int
    n_startup_trials: int
    config: TuningConfig
    deadline: float | None  # time.time() past which a task runs no trial


_DATA: dict[str, TuningData] = {}  # a worker's tuning matrices, one study at a time


def _tuning_data(task: _StudyTask) -> TuningData:
    from dataclasses import replace

    from training.tune import make_cv_data, make_tuning_data

    if task.token not in _DATA:
        _DATA.clear()
        t, v = task.train, task.valid
        data = make_tuning_data(
            t.X, t.y, v.X, v.y, task.feature_names, nthread=task.config.nthread, w_train=t.w, w_valid=v.w
        )
        if task.config.cv_folds:
            rows = t.plus(v)
            data = replace(data, cv=make_cv_data(rows.X, rows.y, task.feature_names, task.config.cv_folds,
                                                 task.seed, rows.w))  # fmt: skip
        _DATA[task.token] = data
    return _DATA[task.token]


def _forget_data() -> None:
    _DATA.clear()


def _run_trial(index: int, task: _StudyTask) -> int | None:
    """One trial of the study on this worker; its number (None when the deadline had passed)."""
    import optuna

    from training.tune import make_pruner, trial_objective

    if task.deadline is not None and time.time() > task.deadline:
        return None
    data = _tuning_data(task)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constant_liar, DaskStorage
        sampler = optuna.samplers.TPESampler(
            seed=task.seed + index, n_startup_trials=task.n_startup_trials, constant_liar=True
        )
        study = optuna.load_study(
            study_name=task.study_name, storage=_worker_storage(task.storage), sampler=sampler,
            pruner=make_pruner(task.config),
        )  # fmt: skip
        numbers: list[int] = []
        where = _worker_address()

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", where)
            return trial_objective(trial, data, task.seed, task.config)

        study.optimize(objective, n_trials=1, callbacks=[lambda s, t: numbers.append(t.number)], gc_after_trial=False)
    return numbers[0] if numbers else None


_DASK_STORAGE = "dask-storage:"


def _worker_storage(storage: str) -> Any:
    """The study's storage on a worker: the URI, or a handle on the scheduler's DaskStorage (no re-registration)."""
    if not storage.startswith(_DASK_STORAGE):
        return storage
    from optuna_integration import DaskStorage

    return DaskStorage(name=storage[len(_DASK_STORAGE) :], register=False)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not on a worker
        return f"pid {os.getpid()}"


def study_storage(dask: Client, storage: str) -> Any:
    """The storage the workers share: the RDB URI itself (PostgreSQL, reachable from every worker), or for a
    SQLite study a `DaskStorage` around it on a LocalCluster's scheduler (ConfigError on a remote cluster)."""
    from nextbest.distributed import is_local
    from nextbest.models.registry import database_uri

    uri = database_uri(storage)
    if not uri.startswith("sqlite"):
        return uri
    if not is_local(dask):
        raise ConfigError(
            "training.optuna_storage: the workers of a remote Dask cluster cannot share a SQLite study; set "
            "NEXTBEST_TRAINING__OPTUNA_STORAGE to a PostgreSQL URI they reach"
        )
    import optuna
    from optuna_integration import DaskStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return DaskStorage(storage=uri, client=dask)


def run_study_dask(
    dask: Client,
    train: Rows,
    valid: Rows,
    feature_names: Sequence[str],
    trials: int,
    *,
    study_name: str,
    storage: str,
    seed: int,
    timeout: float | None = None,
    config: TuningConfig | None = None,
    callbacks: Sequence[TrialCallback] = (),
) -> optuna.Study:
    """`tune.run_study` with the trials on the cluster's workers (module docstring); the same study comes back."""
    import optuna

    from nextbest.distributed import map_partitions
    from training.tune import TuningConfig, check_study, create_study

    if trials < 1:
        raise ConfigError("trials must be >= 1")
    config = config or TuningConfig()
    shared = study_storage(dask, storage)
    n_startup = min(5, max(2, trials // 2))
    study = create_study(study_name, shared, seed, config, n_startup_trials=n_startup, trials=trials)
    offset = len(study.get_trials(deepcopy=False))  # a resumed study: new seeds, not its first ones again
    task = _StudyTask(
        token=uuid.uuid4().hex, train=train, valid=valid, feature_names=list(feature_names), study_name=study_name,
        storage=shared if isinstance(shared, str) else _DASK_STORAGE + shared.name, seed=seed + offset,
        n_startup_trials=n_startup, config=config, deadline=None if timeout is None else time.time() + timeout,
    )  # fmt: skip

    def finished(_: int, number: int | None) -> None:
        if number is None:
            return
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        for callback in callbacks:
            callback(study, trial)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        map_partitions(dask, _run_trial, list(range(trials)), task, on_done=finished)
    finally:
        dask.run(_forget_data)  # the workers' tuning matrices of this study
    return check_study(study, study_name)


# -------------------------------------------------------------------- xgboost.dask


def _collections(dask: Client, rows: Rows, feature_names: list[str], parts: int) -> tuple[Any, Any, Any]:
    """Dask dataframes of the rows (X, y, weights or None), `parts` partitions, persisted on the workers."""
    import dask.dataframe as dd
    import pandas as pd

    n = max(1, min(parts, len(rows)))
    X = dd.from_pandas(pd.DataFrame(rows.X, columns=feature_names), npartitions=n)
    y = dd.from_pandas(pd.Series(rows.y, name="label"), npartitions=n)
    if rows.w is None:
        X, y = dask.persist([X, y])
        return X, y, None
    X, y, w = dask.persist([X, y, dd.from_pandas(pd.Series(rows.w, name="weight"), npartitions=n)])
    return X, y, w


def fit_booster_dask(
    dask: Client, params: dict[str, Any], fit: Rows, stop: Rows, config: TuningConfig, feature_names: list[str]
) -> xgb.Booster:
    """`tune.fit_booster` by `xgboost.dask`: boost on `fit`, early-stop on `stop`'s log-loss, keep the best rounds."""
    from xgboost import dask as dxgb

    from nextbest.distributed import n_workers
    from training.tune import keep_best_rounds

    parts = n_workers(dask)
    Xf, yf, wf = _collections(dask, fit, feature_names, parts)
    Xs, ys, ws = _collections(dask, stop, feature_names, parts)
    with dask.as_current():  # xgboost.dask looks the client up even when it is passed
        dtrain = dxgb.DaskQuantileDMatrix(dask, Xf, yf, weight=wf, max_bin=params.get("max_bin", 256))
        dvalid = dxgb.DaskQuantileDMatrix(dask, Xs, ys, weight=ws, ref=dtrain)
        out = dxgb.train(
            dask, params, dtrain, num_boost_round=config.max_rounds, evals=[(dvalid, "validation")],
            early_stopping_rounds=config.early_stopping_rounds, verbose_eval=False,
        )  # fmt: skip
    return keep_best_rounds(out["booster"], out["history"], feature_names)


def refit_booster_dask(
    dask: Client, params: dict[str, Any], rows: Rows, rounds: int, feature_names: list[str] | None = None
) -> xgb.Booster:
    """`recipe.refit_booster` by `xgboost.dask`: exactly `rounds` rounds on `rows`, no early stopping."""
    from xgboost import dask as dxgb

    from nextbest.distributed import n_workers
    from nextbest.errors import DataError

    if rounds < 1:
        raise DataError(f"a refit needs at least one round, got {rounds}")
    if len(np.unique(rows.y)) < 2:
        raise DataError("refit rows hold one class only")
    names = feature_names or [f"f{i}" for i in range(rows.X.shape[1])]
    X, y, w = _collections(dask, rows, names, n_workers(dask))
    with dask.as_current():
        data = dxgb.DaskQuantileDMatrix(dask, X, y, weight=w, max_bin=params.get("max_bin", 256))
        booster = dxgb.train(dask, params, data, num_boost_round=rounds, verbose_eval=False)["booster"]
    if feature_names is not None:
        booster.feature_names = feature_names
    return booster


def fit_recipe_dask(
    dask: Client,
    params: dict[str, Any],
    fit: Rows,
    stop: Rows,
    config: TuningConfig,
    *,
    calibration: CalibrationMethod | None = "platt",
    feature_names: list[str],
) -> RecipeFit:
    """`recipe.fit_recipe` with both boosters fitted by `xgboost.dask` (calibration here, on the same margins)."""
    from functools import partial

    from training.recipe import fit_recipe

    started = time.perf_counter()
    stopped = fit_booster_dask(dask, params, fit, stop, config, feature_names)
    out = fit_recipe(
        params, fit, stop, config, calibration=calibration, feature_names=feature_names, stopped=stopped,
        refit=partial(refit_booster_dask, dask),
    )  # fmt: skip
    logger.info("xgboost.dask: recipe fitted in %.1f s (%d rounds)", time.perf_counter() - started, out.rounds)
    return out
