"""A faster start for the workspace's Spark driver: JVM options and a class-data-sharing archive.

Most of the seconds before a researcher's first Spark result are the driver JVM loading, verifying and
interpreting some 15,000 classes of Spark, Hadoop and Parquet, on two cores shared with the notebook server.
Two things cut that down (measured in docs/adr/0005-workspace-isolation.md, "Spark start-up"):

* :data:`~tre_lib.compute.session.SPARK_JAVA_OPTIONS`: only the quick C1 compiler and the serial
  collector, so JIT and GC threads do not compete with the one thread that starts Spark;
* an **AppCDS archive** (``-XX:SharedArchiveFile``): the classes a warm-up session loaded, parsed and
  verified once, mapped read-only by every later driver JVM. :func:`build_archive` makes it when the
  workspace environment is built (``deploy/local/build-workspace-venv.sh``), as root, in the environment's
  ``share/tre/`` (root-owned, world-readable: the JVM trusts the archive as code, so no researcher may
  write it).

The archive is valid only for the exact JDK and jars it was made with; after an upgrade of either the JVM
prints a warning and starts without it (slower, still correct) until the environment is rebuilt.

Usage: ``python -m tre_lib.compute.spark_archive [ARCHIVE]`` (default
:func:`~tre_lib.compute.session.default_archive`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tre_lib.compute.session import Workspace, WorkspaceConfig, default_archive


def build_archive(target: Path, *, python: str = sys.executable) -> Path:
    """Run a warm-up Spark session in a fresh ``python`` and keep the classes it loaded in ``target``.

    The JVM writes the archive when it exits, so the warm-up runs in a child process; the file is then
    moved into place in one rename (a driver starting meanwhile maps the old archive or none).

    Raises:
        RuntimeError: the warm-up failed (its output is in the message) or wrote no archive.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tre-spark-warm-up-") as work:
        done = subprocess.run(
            [python, "-m", "tre_lib.compute.spark_archive", "--warm-up", str(partial)],
            cwd=work,
            env={**os.environ, "TMPDIR": work},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = done.stdout.decode(errors="replace")[-3000:]
        raise RuntimeError(
            f"the Spark warm-up for the class archive failed ({done.returncode}); the workspaces still work, "
            f"only Spark starts slower. Its output:\n{tail}"
        )
    partial.chmod(0o644)
    partial.replace(target)
    return target


def _warm_up(archive: Path) -> None:
    """What a typical notebook does first: views registered, a join, aggregates, pandas both ways."""
    work = Path.cwd()
    (work / "views").mkdir()
    config = WorkspaceConfig(
        project="warm-up",
        views_dir=work / "views",
        spark_master="local[2]",
        spark_class_archive=None,
        # Only errors: the JVM lists every class it cannot archive (generated, signed jars) as a warning.
        spark_conf={"spark.driver.extraJavaOptions": f"-XX:ArchiveClassesAtExit={archive} -Xlog:cds=error"},
    )
    spark = Workspace(config).spark()
    people = spark.range(1000).selectExpr(
        "sha2(cast(id AS string), 256) AS demographic_id", "cast(id % 7 AS string) AS chapter"
    )
    people.write.parquet(str(work / "views" / "a"))
    people.selectExpr(
        "demographic_id", "CASE WHEN chapter = '0' THEN 'inactive' ELSE 'employed' END AS status"
    ).write.parquet(str(work / "views" / "b"))
    for name in ("a", "b"):
        spark.read.parquet(str(work / "views" / name)).createOrReplaceTempView(name)
    table = spark.sql(
        "SELECT a.chapter, count(*) AS people, sum(CASE WHEN b.status = 'inactive' THEN 1 ELSE 0 END) AS n "
        "FROM a JOIN b ON a.demographic_id = b.demographic_id GROUP BY a.chapter ORDER BY a.chapter"
    ).toPandas()
    spark.createDataFrame(table).filter("people > 0").groupBy().sum("n").collect()
    spark.range(10_000).selectExpr("sum(id) AS s").first()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--warm-up"] and len(args) == 2:
        _warm_up(Path(args[1]))
        return 0  # the JVM writes the archive as this process exits
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(__doc__.rsplit("Usage: ", 1)[1].strip(), file=sys.stderr)
        return 2
    target = Path(args[0]) if args else default_archive()
    print(f"Spark class archive written: {build_archive(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
