"""A sweep's trials as an Optuna study: who trains which (point, seed), on one machine or many (ADR 0054).

Every (point, seed) of a plan is one Optuna trial. The process that creates the study enqueues them all, in the
plan's order, with the plan in the study's attributes; a process that finds the study joins it, after checking
that its plan is the same (a changed spec is refused, naming the difference). Workers then claim trials one at a
time: a WAITING trial becomes RUNNING through the storage's own atomic transition, so each is trained by exactly
one worker, whichever machine it runs on. The trials keep the spec's draws (``search.draw_trials``): Optuna
schedules and records, it does not sample. Each trial's parameters are recorded under Optuna distributions that
mirror the spec's (``distribution``), so Optuna's own tools (optuna-dashboard) read the study.

A worker shows it is alive by stamping its trial every ``HEARTBEAT_SECONDS``. A trial whose stamp is older than
``GRACE_SECONDS`` (its worker was killed, or its machine lost) is failed by the first worker that notices, which
enqueues a copy: the next worker resumes that run from its newest checkpoint, as ``--resume`` does. Only one worker
can fail a trial (the storage refuses to finish a finished trial), so only one copy is made.

Storage: a SQLite file inside the sweep's folder by default (``runs/<sweep>/study.db``: nothing to start);
``--storage`` takes any SQLAlchemy URL Optuna accepts (PostgreSQL, MySQL) for several machines, or
``journal:/shared/path/study.log`` for Optuna's journal file on a filesystem they share.
"""

import contextlib
import threading
import time
from dataclasses import dataclass

import optuna
import sqlalchemy
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ddpm.decisions.adr import fmt
from ddpm.experiments.spec import SpecError

HEARTBEAT_SECONDS = 10.0
GRACE_SECONDS = 120.0  # a RUNNING trial silent this long is taken for dead (12 missed beats)
POLL_SECONDS = 5.0  # how often a worker with nothing to claim looks again while others still train
PLAN_KEYS = ("budget", "points", "base", "seeds")  # what must agree for two processes to work on one study


@dataclass
class Unit:
    """One (point, seed): a run of the sweep, as the runner trains it."""

    point: dict
    seed: int
    run: str  # <trial>-s<seed>
    steps: int


def storage_for(url: str):
    """An Optuna storage for ``url``; SpecError in one line for a URL it cannot use or a database it cannot reach."""
    try:
        if url.startswith("journal:"):
            return JournalStorage(JournalFileBackend(url[len("journal:") :]))
        if url.startswith("sqlite"):
            storage = _first_of_racing(lambda: RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}))
            _begin_immediate(storage.engine)
            return storage
        return _first_of_racing(lambda: RDBStorage(url, engine_kwargs={"pool_pre_ping": True}))
    except Exception as err:  # noqa: BLE001 - any failure to open a storage is the URL's or the server's
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise SpecError(
            f"STORAGE={url}: cannot open it ({type(err).__name__}: {first}); give a database URL Optuna "
            "accepts (postgresql://user:pass@host/db, mysql+pymysql://…, sqlite:///path.db) or journal:/shared/file"
        ) from None


def _first_of_racing(open_storage, tries: int = 5):
    """``open_storage()``, tried again when another process was creating the same database's tables at that moment.
    Optuna creates its schema (tables, then alembic's version row) outside one transaction, so workers started
    together on a fresh database collide ("table studies already exists", a UNIQUE failure on alembic_version);
    the next try finds the schema made and only reads it."""
    for attempt in range(tries):
        try:
            return open_storage()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as err:
            if attempt == tries - 1 or not _schema_race(err):
                raise
            time.sleep(0.2 * (attempt + 1))


def _schema_race(err) -> bool:
    text = str(err).lower()
    return "already exists" in text or "alembic_version" in text or "database is locked" in text


def _begin_immediate(engine) -> None:
    """Make each SQLite transaction take the write lock at its start (SQLAlchemy's recipe for pysqlite). Python's
    sqlite3 otherwise begins a transaction only at the first write, so Optuna's read of a trial's state and its write
    of RUNNING were not one transaction: two workers could both read WAITING and both claim the run. Postgres and
    MySQL lock the row (SELECT ... FOR UPDATE) and need nothing."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own; the next hook does

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections Optuna opened to create the schema were made before the hooks


def distribution(dim) -> object:
    """The Optuna distribution of a spec dimension (``search.Dimension``): log-uniform and uniform floats, 1 - 10^r
    as a float on its range, integers, choices and fixed values as categoricals (tuples by their literal)."""
    if dim.kind == "log_uniform":
        return FloatDistribution(*dim.arg, log=True)
    if dim.kind == "uniform":
        return FloatDistribution(*dim.arg)
    if dim.kind == "one_minus_10_pow":
        lo, hi = dim.arg
        return FloatDistribution(round(1 - 10**hi, 12), round(1 - 10**lo, 12))
    if dim.kind == "int_uniform":
        return IntDistribution(*dim.arg)
    values = dim.arg if dim.kind == "choice" else [dim.arg]
    return CategoricalDistribution([_plain(v) for v in values])


def _plain(value):
    """A value as Optuna can hold it: numbers, strings and bools as they are, anything else as its literal."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else fmt(value)


def open_study(url: str, name: str, plan: dict, units: list, *, log=print) -> optuna.Study:
    """The study of ``plan`` in ``url``: created with every unit enqueued, or joined when it exists with the same
    plan; SpecError when it exists with another."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(url)
    wanted = {k: plan.get(k) for k in PLAN_KEYS}
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=_direction(plan))
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        for _ in range(60):  # its creator may still be enqueueing
            if study.user_attrs.get("ready"):
                break
            time.sleep(1)
        stored = study.user_attrs.get("plan") or {}
        changed = [k for k in PLAN_KEYS if stored.get(k) != wanted[k]]
        if changed and not (changed == ["seeds"] and set(stored["seeds"]) <= set(wanted["seeds"])):
            raise SpecError(
                f"the study {name!r} in {url} holds another plan ({', '.join(changed) or 'none stored'} differ): "
                "the spec changed under it; give the spec another name, or another STORAGE"
            ) from None
        if changed:  # more seeds: run <trial>-s<k> is the same whatever the count, so only the new ones are added
            known = {t.user_attrs.get("run") for t in study.get_trials(deepcopy=False)}
            for unit in units:
                if unit.run not in known:
                    study.enqueue_trial(unit_params(unit), user_attrs={"run": unit.run})
            study.set_user_attr("plan", wanted)
        log(f"joined the study {name!r} in {url}")
        return study
    except Exception as err:  # noqa: BLE001 - an unreachable server shows up at the first query
        raise SpecError(f"STORAGE={url}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    study.set_user_attr("plan", wanted)
    for unit in units:
        study.enqueue_trial(unit_params(unit), user_attrs={"run": unit.run})
    study.set_user_attr("ready", True)
    log(f"created the study {name!r} in {url}: {len(units)} runs to train")
    return study


def _direction(plan: dict) -> str:
    return "minimize" if plan.get("direction", "min") == "min" else "maximize"


def unit_params(unit: Unit) -> dict:
    return {**{k: _plain(v) for k, v in unit.point["overrides"].items()}, "SEED": unit.seed}


def claim(study: optuna.Study, order: dict = None):
    """A WAITING trial made RUNNING by this worker (the storage's atomic transition), or None when none waits; the
    first in ``order`` (run name → its place in the plan), so that a run handed back is trained before new ones."""
    storage = study._storage  # noqa: SLF001 - the storage the study was opened with; its API is public
    waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))  # noqa: SLF001
    for frozen in sorted(waiting, key=lambda t: ((order or {}).get(t.user_attrs.get("run"), 0), t.number)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):  # noqa: SLF001
                return optuna.trial.Trial(study, frozen._trial_id)  # noqa: SLF001
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def record_params(trial, dims: list, seeds: list) -> None:
    """Suggest each varied constant and the seed, which the enqueued values fix: the trial's params in Optuna."""
    for dim in dims:
        d = distribution(dim)
        if isinstance(d, FloatDistribution):
            trial.suggest_float(dim.name, d.low, d.high, log=d.log)
        elif isinstance(d, IntDistribution):
            trial.suggest_int(dim.name, d.low, d.high)
        else:
            trial.suggest_categorical(dim.name, d.choices)
    trial.suggest_int("SEED", min(seeds), max(seeds))


class Beating:
    """Stamps ``trial`` every HEARTBEAT_SECONDS while its run trains (``with Beating(study, trial):``)."""

    def __init__(self, study, trial):
        self.study, self.trial, self.stop = study, trial, threading.Event()

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.study._storage.set_trial_system_attr(self.trial._trial_id, "alive", time.time())  # noqa: SLF001
            except Exception:  # noqa: BLE001 - a missed beat; the next one may pass
                pass

    def __enter__(self):
        self.study._storage.set_trial_system_attr(self.trial._trial_id, "alive", time.time())  # noqa: SLF001
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def handed_back_if_interrupted(study, trial):
    """A worker interrupted (Ctrl-C) while its run trains fails its trial and enqueues a copy, so that the next
    start resumes that run at once instead of waiting out the grace period of a dead worker."""
    try:
        yield
    except KeyboardInterrupt:
        frozen = study._storage.get_trial(trial._trial_id)  # noqa: SLF001
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(frozen.system_attrs.get("fixed_params", frozen.params), user_attrs=frozen.user_attrs)
        raise


def take_over_stale(study) -> list:
    """Fail the RUNNING trials whose worker has not stamped them for GRACE_SECONDS and enqueue a copy of each
    (their runs resume from their checkpoints); returns their run names. Two workers noticing the same trial:
    only the one whose transition succeeds makes the copy."""
    storage, taken = study._storage, []  # noqa: SLF001
    for frozen in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):  # noqa: SLF001
        alive = frozen.system_attrs.get("alive", frozen.datetime_start.timestamp() if frozen.datetime_start else 0)
        if time.time() - alive <= GRACE_SECONDS:
            continue
        try:
            storage.set_trial_user_attr(frozen._trial_id, "reason", f"no heartbeat for {GRACE_SECONDS:.0f} s")  # noqa: SLF001
            if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL):  # noqa: SLF001
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        study.enqueue_trial(frozen.system_attrs.get("fixed_params", frozen.params), user_attrs=frozen.user_attrs)
        taken.append(frozen.user_attrs.get("run"))
    return taken


def counts(study) -> dict:
    """state name → how many trials of the study are in it."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out
