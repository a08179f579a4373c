"""``tre_lib.session()``: a project's views, and Spark and Dask pointed at them, inside a workspace.

A workspace is started by the hub for one user and one project. The hub sets its environment:

=======================  ===============================================================================
variable                 meaning
=======================  ===============================================================================
``TRE_PROJECT``          the project code this workspace was started for
``TRE_VIEWS_DIR``        the directory holding that project's views (nothing else is mounted)
``TRE_API_URL``          the control plane, for release requests (``TRE_API_TOKEN`` holds a scoped token)
``TRE_PROJECT_ID``       optional: the project's id in the control plane (else looked up by its code)
``TRE_SPARK_MASTER``     Spark master URL (default ``local[*]``); ``TRE_SPARK_CONF`` JSON of extra conf
``TRE_SPARK_CLASS_ARCHIVE``  optional: the driver JVM's class-data-sharing archive (default: the one the
                         workspace environment was built with, :mod:`tre_lib.compute.spark_archive`;
                         ``none`` turns it off)
``TRE_DASK_SCHEDULER``   Dask scheduler address (default: a LocalCluster in the workspace)
``MEM_LIMIT``            bytes the server may use (set by the hub); local Spark and Dask stay below it
=======================  ===============================================================================

What a workspace can read is decided by the file system (the project's Unix group, or the project's
volume on Kubernetes), not by this module: the readers here only make the project's views easy to use
and turn a request for anything else into a :class:`WorkspaceError` that says what to do.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tre_lib.compute.errors import WorkspaceError, install_notebook_handler
from tre_lib.compute.manifest import ColumnInfo, ViewManifest, parquet_parts, read_manifest

if TYPE_CHECKING:
    from distributed import Client
    from pyspark.sql import SparkSession

    from tre_lib.outputs import Airlock
    from tre_lib.privacy import DPResult

#: JVM options of every workspace's Spark driver: only the quick C1 compiler and the serial collector, so
#: JIT and GC threads do not compete with the one thread that starts Spark on a small shared host.
SPARK_JAVA_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
SPARK_ARCHIVE_NAME = "spark-classes.jsa"


def default_archive(prefix: str | os.PathLike[str] = sys.prefix) -> Path:
    """The Spark driver's class-data-sharing archive of the environment at ``prefix`` (``share/tre/``).

    Made when the workspace environment is built (:mod:`tre_lib.compute.spark_archive`).
    """
    return Path(prefix) / "share" / "tre" / SPARK_ARCHIVE_NAME


def driver_java_options(archive: Path | None) -> str:
    """``spark.driver.extraJavaOptions`` for a workspace's driver, with ``archive`` if that file exists."""
    options = list(SPARK_JAVA_OPTIONS)
    # Naming a missing archive would turn off even the JDK's own class sharing: only name one that exists.
    if archive is not None and archive.is_file():
        options.append(f"-XX:SharedArchiveFile={archive}")
    return " ".join(options)


Engine = Literal["pandas", "polars", "arrow", "dask", "spark"]
ENGINES: tuple[str, ...] = ("pandas", "polars", "arrow", "dask", "spark")
_SQL_NAME = re.compile(r"[^0-9A-Za-z_]")


@dataclass(frozen=True)
class WorkspaceConfig:
    """The workspace's settings, read once from the environment the hub gave it."""

    project: str
    views_dir: Path
    api_url: str | None = None
    api_token: str | None = None
    project_id: str | None = None
    spark_master: str = "local[*]"
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    spark_class_archive: Path | None = field(default_factory=default_archive)
    dask_scheduler: str | None = None
    dask_workers: int = 1
    dask_threads: int = 2
    mem_limit: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkspaceConfig:
        """Read the ``TRE_*`` variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        views_dir = env.get("TRE_VIEWS_DIR", "").strip()
        project = env.get("TRE_PROJECT", "").strip()
        if not views_dir or not project:
            raise WorkspaceError(
                "this is not a tre workspace: TRE_PROJECT and TRE_VIEWS_DIR are not set. Start a server for "
                "your project from JupyterHub, or outside a workspace call "
                "tre_lib.session(project=..., views_dir=...)"
            )
        try:
            spark_conf = json.loads(env.get("TRE_SPARK_CONF", "") or "{}")
        except json.JSONDecodeError as exc:
            raise WorkspaceError(
                f"TRE_SPARK_CONF is not valid JSON ({exc.msg}); fix the hub's setting"
            ) from exc
        mem = env.get("MEM_LIMIT", "").strip()
        return cls(
            project=project,
            views_dir=Path(views_dir),
            api_url=env.get("TRE_API_URL") or None,
            api_token=env.get("TRE_API_TOKEN") or None,
            project_id=env.get("TRE_PROJECT_ID") or None,
            spark_master=env.get("TRE_SPARK_MASTER") or "local[*]",
            spark_conf={str(k): str(v) for k, v in dict(spark_conf).items()},
            spark_class_archive=_class_archive(env.get("TRE_SPARK_CLASS_ARCHIVE", "")),
            dask_scheduler=env.get("TRE_DASK_SCHEDULER") or None,
            dask_workers=int(env.get("TRE_DASK_WORKERS", "1") or 1),
            dask_threads=int(env.get("TRE_DASK_THREADS", "2") or 2),
            mem_limit=int(mem) if mem.isdigit() else None,
        )

    def spark_settings(self) -> dict[str, str]:
        """The conf :meth:`Workspace.spark` starts its session with: defaults, then ``TRE_SPARK_CONF``.

        The defaults aim at a first result within seconds on a small shared host; see
        :mod:`tre_lib.compute.spark_archive` for the driver's JVM options.
        """
        conf: dict[str, str] = {
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / f"spark-warehouse-{os.getuid()}"),
            "spark.driver.extraJavaOptions": driver_java_options(self.spark_class_archive),
        }
        cores = _local_cores(self.spark_master)
        if cores is not None:
            # 200 shuffle partitions (Spark's default, sized for clusters) are 200 tasks per join on a
            # couple of cores; adaptive execution still coalesces small ones.
            conf["spark.sql.shuffle.partitions"] = str(2 * cores)
            # The driver's RPC and block-manager ports would otherwise listen on the host's network
            # address and hand broadcast and cached blocks (rows of the views) to any process that asks,
            # another researcher's included. In local mode nothing else needs them: loopback only, and
            # Spark's authentication, whose secret Spark generates inside this JVM (never on a command
            # line, which every user can read in /proc).
            conf["spark.driver.bindAddress"] = "127.0.0.1"
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.authenticate"] = "true"
            # Its UI is not reachable through the hub, and would be one more port, without authentication,
            # showing query plans and their literal values to any user of the host. (A cluster's driver
            # keeps Spark's default: its deployment decides, see deploy/README.md.)
            conf["spark.ui.enabled"] = "false"
            if self.mem_limit:
                # The driver is the executor in local mode: keep its heap well inside the server's limit.
                conf["spark.driver.memory"] = f"{max(512, self.mem_limit // (2 * 1024 * 1024))}m"
        extra = dict(self.spark_conf)
        java = extra.pop("spark.driver.extraJavaOptions", "")
        conf.update(extra)
        if java:
            # A deployment's JVM options are added after ours (the JVM takes the last of a repeated
            # option), so setting e.g. a temp dir does not silently lose the fast start.
            conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {java}"
        return conf


@dataclass(frozen=True)
class DatasetInfo:
    """One view of the project, as ``Workspace.datasets()`` lists it."""

    name: str
    title: str
    description: str
    rows: int
    columns: tuple[ColumnInfo, ...]
    source_version: int
    path: Path

    @property
    def schema(self) -> dict[str, str]:
        """Column name -> type."""
        return {c.name: c.type for c in self.columns}

    @property
    def sql_name(self) -> str:
        """The name of the view in Spark SQL (``spark.table(...)``, ``SELECT ... FROM ...``)."""
        return sql_name(self.name)

    def describe(self) -> str:
        lines = [f"{self.name} (v{self.source_version}, {self.rows} rows): {self.title}"]
        if self.description:
            lines.append(f"  {self.description}")
        for column in self.columns:
            note = " [project ID: joins inside this project only]" if column.project_id_column else ""
            lines.append(f"  - {column.name}: {column.type}{note} {column.description}".rstrip())
        return "\n".join(lines)


def _class_archive(setting: str) -> Path | None:
    """``TRE_SPARK_CLASS_ARCHIVE``: empty for the environment's own archive, ``none`` for no archive."""
    setting = setting.strip()
    if not setting:
        return default_archive()
    return None if setting.lower() == "none" else Path(setting)


def _local_cores(master: str) -> int | None:
    """The cores of a local master (``local``, ``local[4]``, ``local[*]``, ``local[4,2]``), else None."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master.strip())
    if found is None:
        return None
    cores = found.group(1) or "1"
    return (os.cpu_count() or 1) if cores == "*" else max(1, int(cores))


def sql_name(dataset: str) -> str:
    """A dataset name as a Spark SQL identifier (``-`` and other symbols become ``_``)."""
    return _SQL_NAME.sub("_", dataset)


class Workspace:
    """A project's views and the engines to analyse them. Create it with :func:`session`.

    Example:
        >>> ws = tre_lib.session()                                  # doctest: +SKIP
        >>> [d.name for d in ws.datasets()]                         # doctest: +SKIP
        ['hospital_episodes', 'labour_force_survey']
        >>> spark = ws.spark()                                      # doctest: +SKIP
        >>> spark.sql("SELECT count(*) FROM hospital_episodes")     # doctest: +SKIP
        >>> ddf = ws.read("labour_force_survey", engine="dask")     # doctest: +SKIP
    """

    def __init__(self, config: WorkspaceConfig) -> None:
        self.config = config
        self._spark: SparkSession | None = None
        self._dask: Client | None = None
        self._own_cluster: Any = None
        self._airlock: Airlock | None = None

    def __repr__(self) -> str:
        return f"Workspace(project={self.project!r}, views_dir={str(self.config.views_dir)!r})"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def project(self) -> str:
        return self.config.project

    # The catalogue -----------------------------------------------------------------------------

    def _entries(self) -> list[Path]:
        views = self.config.views_dir
        try:
            return sorted(p for p in views.iterdir() if not p.name.startswith(".") and p.is_dir())
        except FileNotFoundError:
            raise WorkspaceError(
                f"project {self.project} has no views yet ({views} does not exist); ask an administrator "
                "to build them (`tre view build --project ...`)"
            ) from None
        except PermissionError:
            raise WorkspaceError(
                f"you cannot read the views of project {self.project}: your access may have been "
                "removed (agreement revoked, accreditation or project expired). Ask the project lead or "
                "the TRE service desk"
            ) from None

    def datasets(self) -> list[DatasetInfo]:
        """The project's views with their schema and description, by name."""
        out: list[DatasetInfo] = []
        for entry in self._entries():
            try:
                manifest = read_manifest(entry)
            except (FileNotFoundError, ValueError, PermissionError):
                continue  # a view being built, or one this user may no longer read
            out.append(_info(manifest, entry))
        return out

    def names(self) -> list[str]:
        return [d.name for d in self.datasets()]

    def dataset(self, name: str) -> DatasetInfo:
        """One view's description, or a :class:`WorkspaceError` naming the views there are."""
        if not isinstance(name, str):
            raise WorkspaceError(f"give a dataset name as text, not {type(name).__name__}")
        found = {d.name: d for d in self.datasets()}
        if name in found:
            return found[name]
        by_sql = {d.sql_name: d for d in found.values()}
        if name in by_sql:
            return by_sql[name]
        have = ", ".join(sorted(found)) or "none yet"
        raise WorkspaceError(
            f"project {self.project} has no view called {name!r}; its views are: {have}. A workspace reads "
            "only its own project's views: to use another dataset, the project lead asks for it in the "
            "project's application and an administrator rebuilds the views"
        )

    def path(self, name: str) -> Path:
        """The directory of a view (only names from :meth:`datasets` are accepted)."""
        return self.dataset(name).path

    # Readers -----------------------------------------------------------------------------------

    def read(self, name: str, engine: Engine = "pandas", columns: Sequence[str] | None = None) -> Any:
        """Read a view with ``engine``: pandas (default), polars, arrow, dask or spark.

        Raises:
            WorkspaceError: no such view in this project, an unknown column or engine.
        """
        info = self.dataset(name)
        if engine not in ENGINES:
            raise WorkspaceError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
        cols = None if columns is None else list(columns)
        if cols is not None:
            missing = [c for c in cols if c not in info.schema]
            if missing:
                raise WorkspaceError(
                    f"view {info.name} has no column(s) {', '.join(missing)}; "
                    f"it has {', '.join(info.schema)}. "
                    "Columns the project is not approved for are never in its views"
                )
        files = [str(p) for p in parquet_parts(info.path)]
        if engine == "pandas":
            import pandas as pd

            frames = [pd.read_parquet(f, columns=cols) for f in files]
            return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
        if engine == "polars":
            import polars as pl

            frame = pl.read_parquet(files)
            return frame.select(cols) if cols is not None else frame
        if engine == "arrow":
            import pyarrow.parquet as pq

            return pq.read_table(files if len(files) != 1 else files[0], columns=cols)
        if engine == "dask":
            import dask.dataframe as dd

            self.dask()
            return dd.read_parquet(files, columns=cols)
        spark_df = self.spark().table(info.sql_name)
        return spark_df.select(*cols) if cols is not None else spark_df

    # Engines -----------------------------------------------------------------------------------

    def spark(self) -> SparkSession:
        """A SparkSession with every view registered as a temporary view (by :attr:`DatasetInfo.sql_name`).

        Local mode by default; ``TRE_SPARK_MASTER`` points it at a cluster (standalone ``spark://...``,
        ``k8s://...``). An already running session in the process is reused.
        """
        if self._spark is None:
            try:
                from pyspark.sql import SparkSession
            except ImportError as exc:  # pragma: no cover - pyspark is in the workspace environment
                raise WorkspaceError("pyspark is not installed in this environment") from exc
            builder = SparkSession.builder.master(self.config.spark_master).appName(f"tre-{self.project}")
            for key, value in self.config.spark_settings().items():
                builder = builder.config(key, value)
            self._spark = builder.getOrCreate()
        for info in self.datasets():
            self._spark.read.parquet(str(info.path)).createOrReplaceTempView(info.sql_name)
        return self._spark

    def dask(self) -> Client:
        """A Dask client: to ``TRE_DASK_SCHEDULER`` if set, else to a LocalCluster inside the workspace."""
        if self._dask is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:  # pragma: no cover
                raise WorkspaceError("dask.distributed is not installed in this environment") from exc
            if self.config.dask_scheduler:
                self._dask = Client(self.config.dask_scheduler)
            else:
                memory: Any = "auto"
                if self.config.mem_limit:
                    memory = max(256 * 1024 * 1024, self.config.mem_limit // (2 * self.config.dask_workers))
                self._own_cluster = LocalCluster(
                    n_workers=self.config.dask_workers,
                    threads_per_worker=self.config.dask_threads,
                    memory_limit=memory,
                    dashboard_address=None,
                )
                self._dask = Client(self._own_cluster)
        return self._dask

    # The control plane: airlock and privacy budget --------------------------------------------------

    def airlock(self) -> Airlock:
        """This project's airlock (:class:`tre_lib.outputs.Airlock`): stage outputs, request their release.

        It talks to ``TRE_API_URL`` with the workspace's ``TRE_API_TOKEN``; the project's id in the control
        plane is ``TRE_PROJECT_ID`` or is looked up by the project's code.

        Example:
            >>> airlock = tre_lib.session().airlock()                          # doctest: +SKIP
            >>> airlock.table(df, "region", "sex", name="by-region.csv")       # doctest: +SKIP
            >>> airlock.request_release("Admissions by region", "For the report")  # doctest: +SKIP
        """
        if self._airlock is None:
            from tre_lib.outputs import Airlock

            url, token = self.config.api_url, self.config.api_token
            if not url or not token:
                raise WorkspaceError(
                    "this workspace cannot reach the airlock: TRE_API_URL and TRE_API_TOKEN are not set. "
                    "Start your server from JupyterHub, or ask the TRE service desk"
                )
            project_id = self.config.project_id or self._project_id(url, token)
            self._airlock = Airlock(url, token, project_id)
        return self._airlock

    def _project_id(self, url: str, token: str) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {token}"}
        offset = 0
        with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
            while True:
                try:
                    response = client.get("/api/v1/projects", params={"limit": 500, "offset": offset})
                except httpx.HTTPError as exc:
                    raise WorkspaceError(
                        f"cannot reach the control plane at {url} ({exc}); try again, or ask the TRE "
                        "service desk"
                    ) from None
                if response.status_code >= 400:
                    raise WorkspaceError(
                        f"the control plane refused this workspace's token (HTTP {response.status_code}): "
                        "restart your server from JupyterHub to get a new one"
                    )
                page = response.json()
                for project in page:
                    if project.get("code") == self.project:
                        return str(project["id"])
                if len(page) < 500:
                    break
                offset += len(page)
        raise WorkspaceError(
            f"the control plane shows no project {self.project} to you: your membership may have ended. "
            "Ask the project lead"
        )

    def privacy_budget(self) -> list[dict[str, Any]]:
        """The project's differential-privacy budget per scope (limit, spent, remaining ε and δ)."""
        return self._ask_airlock(lambda airlock: airlock.budget())

    def dp_query(
        self,
        mechanism: Callable[..., DPResult],
        dataset: str,
        /,
        *args: Any,
        description: str | None = None,
        **kwargs: Any,
    ) -> DPResult:
        """Run a differentially private query on a view, paid for from the project's budget first.

        ``mechanism`` is one of :mod:`tre_lib.privacy`'s ``dp_count``, ``dp_sum``, ``dp_mean``,
        ``dp_quantile``, ``dp_histogram``. The view is read with polars; once the mechanism has fixed what
        the query spends, the control plane's ledger is charged (for the project and the dataset) and only
        then is a value computed. A charge the budget cannot afford is refused and nothing is released.

        Raises:
            WorkspaceError: no such view, or the budget (or the control plane) refused the charge.

        Example:
            >>> from tre_lib.privacy import dp_count
            >>> r = ws.dp_query(dp_count, "hospital_episodes", epsilon=0.5)    # doctest: +SKIP
            >>> r.value, r.accuracy, r.epsilon                                    # doctest: +SKIP
        """
        if "before_release" in kwargs:
            raise WorkspaceError("dp_query charges the budget itself; do not pass before_release")
        info = self.dataset(dataset)
        frame = self.read(info.name, engine="polars")
        dataset_id = self._dataset_id(info.name)
        text = description or f"{getattr(mechanism, '__name__', 'query')} on {info.name}"

        def charge(epsilon: float, delta: float) -> None:
            self._ask_airlock(
                lambda airlock: airlock.charge([dataset_id], epsilon, delta, description=text[:200])
            )

        return mechanism(frame, *args, before_release=charge, **kwargs)

    def _dataset_id(self, name: str) -> str:
        for scope in self.privacy_budget():
            if scope.get("dataset_name") == name and scope.get("dataset_id"):
                return str(scope["dataset_id"])
        raise WorkspaceError(
            f"view {name} has no differential-privacy budget in project {self.project}: no agreement "
            "covering it sets one. Use disclosure control (airlock().table) instead, or ask the data owner"
        )

    def _ask_airlock(self, call: Callable[[Airlock], Any]) -> Any:
        import httpx

        from tre_lib.outputs import AirlockError

        airlock = self.airlock()
        try:
            return call(airlock)
        except AirlockError as exc:
            raise WorkspaceError(f"the control plane refused: {exc}") from None
        except httpx.HTTPError as exc:
            raise WorkspaceError(f"cannot reach the control plane ({exc}); try again") from None

    def close(self) -> None:
        """Stop the Dask client (and its LocalCluster); the SparkSession is left for the process."""
        if self._dask is not None:
            self._dask.close()
            self._dask = None
        if self._own_cluster is not None:
            self._own_cluster.close()
            self._own_cluster = None


def _info(manifest: ViewManifest, path: Path) -> DatasetInfo:
    return DatasetInfo(
        name=manifest.dataset,
        title=manifest.title,
        description=manifest.description,
        rows=manifest.row_count,
        columns=manifest.columns,
        source_version=manifest.source_version,
        path=path,
    )


def session(
    project: str | None = None,
    *,
    views_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Workspace:
    """The current workspace's project: its views, and Spark and Dask over them.

    Args:
        project: the project code; in a workspace it must be the workspace's own project (default).
        views_dir: outside a workspace, the directory of the project's views (with ``project``).
        environ: the environment to read instead of ``os.environ`` (tests).

    Raises:
        WorkspaceError: not in a workspace, or asked for another project than the workspace's.

    Example:
        >>> ws = tre_lib.session()          # doctest: +SKIP
        >>> ws.datasets()                   # doctest: +SKIP
    """
    install_notebook_handler()
    if views_dir is not None:
        if not project:
            raise WorkspaceError("give the project code with views_dir, e.g. session('P-1', views_dir=...)")
        return Workspace(WorkspaceConfig(project=project, views_dir=Path(views_dir)))
    config = WorkspaceConfig.from_env(environ)
    if project is not None and project != config.project:
        raise WorkspaceError(
            f"this workspace was started for project {config.project}, not {project}: a workspace reads only "
            f"its own project's views. Stop this server and start one for {project} from JupyterHub "
            "(File > Hub Control Panel)"
        )
    return Workspace(config)
