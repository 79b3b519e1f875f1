"""A real local Ray cluster for the job tests: a head started with ``ray start`` and Ray's
fake multi-node autoscaling provider (cluster/local-autoscaling.yaml), jobs sent with the
``ray job submit`` CLI, everything on 127.0.0.1 and on ports picked free for the test.

:meth:`LocalCluster.stop` stops exactly the processes of this cluster (head, fake nodes,
workers, vLLM engines: see :func:`_cluster_pids`), by process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MARKER = "ITOOL_TEST_CLUSTER"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(pid: int) -> list[bytes]:
    try:
        return (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _cluster_pids(token: str, temp_dir: Path) -> set[int]:
    """Every process of one test cluster: those carrying its marker variable, those whose
    command line names its temp folder (the fake nodes' raylets: Ray's fake provider starts
    them with an environment of its own), the processes of those raylets (``RAY_RAYLET_PID``)
    and all their descendants (workers, vLLM engine processes)."""
    import psutil

    marker, folder = f"{MARKER}={token}".encode(), str(temp_dir)
    roots: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if folder in cmd or marker in _environ(proc.info["pid"]):
            roots.add(proc.info["pid"])
    for proc in psutil.process_iter(["pid"]):
        for item in _environ(proc.info["pid"]):
            if item.startswith(b"RAY_RAYLET_PID=") and int(item.split(b"=")[1] or 0) in roots:
                roots.add(proc.info["pid"])
    found = set(roots)
    for pid in roots:
        try:
            found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    found.discard(os.getpid())
    return found


class RayCLIError(RuntimeError):
    pass


class LocalCluster:
    def __init__(self, workdir: Path, *, head_cpus: int = 1) -> None:
        self.workdir = workdir
        self.token = uuid.uuid4().hex[:12]
        self.gcs_port, self.dash_port, self.metrics_port = free_port(), free_port(), free_port()
        self.head_cpus = head_cpus
        # the session dir's socket paths must stay short
        self.temp_dir = Path("/tmp") / f"itr-{self.token[:6]}"
        self.env = {
            **os.environ,
            MARKER: self.token,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_FAKE_CLUSTER": "1",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP 127.0.0.1 (rollout.run.loopback_only)
            # token authentication with a token of this cluster's own (not ~/.ray/auth_token)
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_metrics_report_interval_ms": "2000",
            "RAY_DEDUP_LOGS": "0",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.env.pop("RAY_ADDRESS", None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dash_port}"

    def start(self, attempts: int = 3) -> LocalCluster:
        """Start the head (the autoscaler adds the nodes); a start that fails (a port taken
        between picking it and Ray binding it) is stopped and tried again on new ports."""
        for attempt in range(attempts):
            try:
                return self._start()
            except (RayCLIError, subprocess.SubprocessError):
                self.stop()
                if attempt == attempts - 1:
                    raise
                self.token = uuid.uuid4().hex[:12]
                self.env[MARKER] = self.token
                self.temp_dir = Path("/tmp") / f"itr-{self.token[:6]}"
                self.gcs_port, self.dash_port = free_port(), free_port()
                self.metrics_port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> LocalCluster:
        cfg = yaml.safe_load((ROOT / "cluster" / "local-autoscaling.yaml").read_text())
        cfg["provider"]["gcs_address"] = self.address
        cfg["available_node_types"]["ray.head.default"]["resources"]["CPU"] = self.head_cpus
        path = self.workdir / "autoscaling.yaml"
        path.write_text(yaml.safe_dump(cfg))
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                f"--autoscaling-config={path}",
                f"--num-cpus={self.head_cpus}",
                "--node-ip-address=127.0.0.1",
                f"--port={self.gcs_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dash_port}",
                f"--metrics-export-port={self.metrics_port}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
            ],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        self._wait_dashboard()
        return self

    def _wait_dashboard(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                self.cli("job", "list", "--address", self.dashboard, timeout=60)
                return
            except RayCLIError:
                if time.monotonic() > end:
                    raise
                time.sleep(1)

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run the ``ray`` CLI against this cluster (its env carries the auth token)."""
        done = subprocess.run(
            [str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise RayCLIError(
                f"ray {' '.join(args[:3])} failed ({done.returncode}):\n"
                f"{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, every process of this cluster (:func:`_cluster_pids`)."""
        for sig, pause in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
            pids = _cluster_pids(self.token, self.temp_dir)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if pids:
                time.sleep(pause)

    # ---- jobs ----------------------------------------------------------------------------
    def submit(self, script: str, *args: str, submission_id: str) -> str:
        """``ray job submit --no-wait -- python <repo>/<script> <args>``.

        No ``--working-dir``: every fake node of this cluster shares this machine's disk and
        the session folder, so each node's runtime-env agent would unpack the same package
        into the same folder, concurrently with the other nodes' workers importing from it
        (seen: ``ModuleNotFoundError: itool_ray.mcts.step`` on a node that started while
        another unpacked). The workers import the checkout's own ``itool_ray`` instead.
        """
        end = time.monotonic() + 120
        while True:
            try:
                self.cli(
                    "job",
                    "submit",
                    "--address",
                    self.dashboard,
                    "--submission-id",
                    submission_id,
                    "--no-wait",
                    "--",
                    "python",
                    str(ROOT / script),
                    *args,
                )
                return submission_id
            except RayCLIError as e:  # the head's dashboard agent is not up yet
                if "No available agent" not in str(e) or time.monotonic() > end:
                    raise
                time.sleep(2)

    def job_status(self, job_id: str) -> str:
        text = re.sub(
            r"\x1b\[[0-9;]*m", "", self.cli("job", "status", "--address", self.dashboard, job_id)
        )
        if m := re.search(r"Status for job '[^']*': (\w+)", text):
            return m.group(1)
        if m := re.search(r"Job '[^']*' (succeeded|failed|was stopped|stopped)", text):
            return {"succeeded": "SUCCEEDED", "failed": "FAILED"}.get(m.group(1), "STOPPED")
        raise RuntimeError(f"ray job status: unexpected output {text!r}")

    def job_logs(self, job_id: str) -> str:
        return self.cli("job", "logs", "--address", self.dashboard, job_id)

    def stop_job(self, job_id: str) -> None:
        self.cli("job", "stop", "--address", self.dashboard, job_id)

    def wait_job(self, job_id: str, timeout: float, on_poll=None) -> str:
        end = time.monotonic() + timeout
        while True:
            status = self.job_status(job_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            if on_poll is not None:
                on_poll()
            if time.monotonic() > end:
                raise TimeoutError(f"job {job_id} still {status} after {timeout} s")
            time.sleep(1)

    # ---- state -----------------------------------------------------------------------------
    def _list(self, kind: str, *filters: str) -> list[dict]:
        args = ["list", kind, "--address", self.dashboard, "--format", "json", "--detail"]
        for f in filters:
            args += ["--filter", f]
        text = self.cli(*args)
        try:  # the JSON list, whatever the CLI printed around it
            return json.loads(text[text.index("[") : text.rindex("]") + 1])
        except ValueError:  # nothing listed yet, or the state API was busy: poll again
            return []

    def alive_nodes(self) -> list[dict]:
        return self._list("nodes", "state=ALIVE")

    def worker_nodes(self) -> int:
        return sum(not n["is_head_node"] for n in self.alive_nodes())

    def actors(self, class_name: str) -> list[dict]:
        return self._list("actors", f"class_name={class_name}", "state=ALIVE")

    def metrics_endpoints(self) -> list[str]:
        """Every node's Prometheus endpoint, from the service-discovery file Ray writes for
        ``ray metrics launch-prometheus``."""
        path = self.temp_dir / "prom_metrics_service_discovery.json"
        if not path.exists():
            return [f"127.0.0.1:{self.metrics_port}"]
        return [t for group in json.loads(path.read_text()) for t in group["targets"]]

    def scrape(self) -> str:
        texts = []
        for target in self.metrics_endpoints():
            try:
                with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as r:
                    texts.append(r.read().decode())
            except OSError:
                continue
        return "\n".join(texts)
