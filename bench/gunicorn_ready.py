"""gunicorn settings for bench/webhook.py (`-c`): each worker, once it has loaded the app, leaves
a file named after its process id in $HUZHU_BENCH_READY, so that the benchmark starts loading
only when every worker can answer (a worker importing the app takes seconds; requests sent
meanwhile wait in the listen queue and would count as slow replies)."""
import os
from pathlib import Path


def post_worker_init(worker):
    ready = os.environ.get("HUZHU_BENCH_READY")
    if ready:
        Path(ready, str(worker.pid)).touch()
