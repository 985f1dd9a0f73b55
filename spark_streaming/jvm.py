"""The job's own JVM class: Hadoop's raw local file system without a forked ``chmod`` per file.

Without Hadoop's native library (no Maven jar carries it) ``RawLocalFileSystem`` sets a new file's
permissions by running ``chmod`` as a child process of the driver JVM: two forks per micro-batch (the
offset log and the commit log). ``jvm/spark/src/.../NioRawLocalFileSystem.java`` sets the same bits
through java.nio. It is compiled here, once per version of its source, into the state folder with the
JDK's ``javac`` against pyspark's own Hadoop jar; where no ``javac`` is found (a JRE-only image) the
job falls back to Hadoop's class and logs it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from common.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

NIO_LOCAL_FS = "io.marketpipe.spark.NioRawLocalFileSystem"
HADOOP_LOCAL_FS = "org.apache.hadoop.fs.RawLocalFileSystem"
_SOURCE = (
    PROJECT_ROOT / "jvm" / "spark" / "src" / "io" / "marketpipe" / "spark" / "NioRawLocalFileSystem.java"
)


def _hadoop_jars() -> list[Path]:
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))


def nio_local_fs_jar(out_dir: Path) -> Path | None:
    """The jar of NioRawLocalFileSystem under `out_dir`, compiled if its source changed; None when it
    cannot be built here (no javac, no Hadoop jar: the caller uses Hadoop's own class)."""
    source = _SOURCE.read_bytes()
    jar = out_dir / f"nio-local-fs-{hashlib.sha256(source).hexdigest()[:12]}.jar"
    if jar.exists():
        return jar
    javac, hadoop = shutil.which("javac"), _hadoop_jars()
    if javac is None or not hadoop:
        log.warning("event=nio_local_fs_unavailable javac=%s hadoop_jar=%s", javac, bool(hadoop))
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        classes = Path(tmp) / "classes"
        done = subprocess.run(
            [javac, "--release", "17", "-cp", str(hadoop[-1]), "-d", str(classes), str(_SOURCE)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            log.warning("event=nio_local_fs_unavailable error=%s", done.stderr.strip()[:500])
            return None
        staged = Path(tmp) / jar.name
        with zipfile.ZipFile(staged, "w") as z:
            for f in sorted(classes.rglob("*.class")):
                z.write(f, f.relative_to(classes).as_posix())
        staged.replace(jar)  # atomic: a concurrent builder writes the same bytes
    log.info("event=nio_local_fs_built jar=%s", jar)
    return jar
