"""The workspace's Spark driver starts fast: its defaults, JVM options and class-data-sharing archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tre_lib.compute.session import SPARK_JAVA_OPTIONS, WorkspaceConfig, default_archive
from tre_lib.compute.spark_archive import build_archive


def _settings(views: Path, **env: str) -> dict[str, str]:
    environ = {"TRE_PROJECT": "P-1", "TRE_VIEWS_DIR": str(views), **env}
    return WorkspaceConfig.from_env(environ).spark_settings()


def test_local_spark_starts_without_ui_with_few_partitions_and_quick_jvm_options(tmp_path: Path) -> None:
    conf = _settings(tmp_path, TRE_SPARK_MASTER="local[2]", MEM_LIMIT=str(4 * 1024**3))
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert conf["spark.driver.memory"] == "2048m"
    # Its ports: loopback only, and nothing served without Spark's authentication (tests/security).
    assert (conf["spark.driver.bindAddress"], conf["spark.authenticate"]) == ("127.0.0.1", "true")
    assert conf["spark.driver.extraJavaOptions"].split()[: len(SPARK_JAVA_OPTIONS)] == list(
        SPARK_JAVA_OPTIONS
    )


def test_a_cluster_master_keeps_sparks_partitions_and_memory(tmp_path: Path) -> None:
    conf = _settings(tmp_path, TRE_SPARK_MASTER="spark://10.0.0.1:7077", MEM_LIMIT=str(4 * 1024**3))
    assert "spark.sql.shuffle.partitions" not in conf and "spark.driver.memory" not in conf
    # Executors elsewhere must reach the driver, and authenticate with the cluster's own secret.
    assert "spark.driver.bindAddress" not in conf and "spark.authenticate" not in conf
    assert "spark.ui.enabled" not in conf  # the cluster's deployment decides (its tests read the UI's API)


def test_the_class_archive_is_named_only_when_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "classes.jsa"
    assert (
        "SharedArchiveFile"
        not in _settings(tmp_path, TRE_SPARK_CLASS_ARCHIVE=str(archive))["spark.driver.extraJavaOptions"]
    )
    archive.write_bytes(b"")
    options = _settings(tmp_path, TRE_SPARK_CLASS_ARCHIVE=str(archive))["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in options.split()
    assert (
        WorkspaceConfig.from_env(
            {"TRE_PROJECT": "P-1", "TRE_VIEWS_DIR": "/v", "TRE_SPARK_CLASS_ARCHIVE": "none"}
        ).spark_class_archive
        is None
    )
    # By default the environment's own archive (made by deploy/local/build-workspace-venv.sh).
    assert WorkspaceConfig.from_env({"TRE_PROJECT": "P-1", "TRE_VIEWS_DIR": "/v"}).spark_class_archive == (
        Path(sys.prefix) / "share" / "tre" / "spark-classes.jsa"
    )
    assert default_archive("/opt/env") == Path("/opt/env/share/tre/spark-classes.jsa")


def test_the_deployments_spark_conf_wins_and_its_jvm_options_come_last(tmp_path: Path) -> None:
    conf = _settings(
        tmp_path,
        TRE_SPARK_MASTER="local[1]",
        TRE_SPARK_CONF=json.dumps(
            {"spark.ui.enabled": "true", "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=4"}
        ),
    )
    assert conf["spark.ui.enabled"] == "true"
    # The JVM takes the last of a repeated option: the deployment can turn C2 back on for long jobs.
    assert conf["spark.driver.extraJavaOptions"].split()[-1] == "-XX:TieredStopAtLevel=4"


@pytest.mark.slow
def test_a_built_class_archive_is_mapped_by_the_next_workspace_driver(tmp_path: Path, views: Path) -> None:
    archive = build_archive(tmp_path / "share" / "spark-classes.jsa")
    assert archive.stat().st_mode & 0o777 == 0o644  # researchers read it; only its builder writes it
    env = {
        **os.environ,
        "TRE_PROJECT": "P-1",
        "TRE_VIEWS_DIR": str(views),
        "TRE_SPARK_MASTER": "local[1]",
        "TRE_SPARK_CLASS_ARCHIVE": str(archive),
        # -Xshare:on makes a JVM that cannot map the archive refuse to start, instead of starting slowly.
        "TRE_SPARK_CONF": json.dumps({"spark.driver.extraJavaOptions": "-Xshare:on"}),
    }
    code = (
        "import tre_lib\n"
        "spark = tre_lib.session().spark()\n"
        "print(spark.sql('SELECT count(*) FROM hes JOIN lfs_2026 USING (demographic_id)').first()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "2"
