"""A replica's materialized adapters under the temp dir: older versions pruned once a new one
serves, all removed at shutdown, and the folders of killed replicas swept by the next replica
on the machine. No engine: the replica's policy is a stand-in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from itool_ray.rollout.replica import AdapterFolders, PolicyReplica

PAYLOAD = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"w" * 64}


def test_prune_keeps_the_served_version_and_close_removes_all(tmp_path):
    folders = AdapterFolders("inc1", root=tmp_path)
    for v in (1, 2, 3):
        folders.folder(v).mkdir()
    assert folders.prune(keep=folders.folder(3)) == [folders.folder(1), folders.folder(2)]
    assert [p.name for p in folders.path.iterdir() if p.is_dir()] == ["v3"]
    folders.prune(keep=None)  # serving the base model, or an adapter folder given by path
    assert not folders.folder(3).exists()
    folders.close()
    assert not folders.path.exists() and list(tmp_path.iterdir()) == []


def test_the_folders_of_a_killed_replica_are_swept_a_live_ones_kept(tmp_path):
    live = AdapterFolders("live", root=tmp_path)
    live.folder(1).mkdir()
    # a replica killed without shutdown (os._exit skips every clean-up, as SIGKILL does)
    code = (
        "import os, sys; from itool_ray.rollout.replica import AdapterFolders; "
        "f = AdapterFolders('dead', root=sys.argv[1]); f.folder(4).mkdir(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert (tmp_path / "dead" / "v4").is_dir()
    # folders of the older code (no lock): swept once they are old, not while they are new
    old, new = tmp_path / "0123abcd", tmp_path / "4567efgh"
    for d in (old, new):
        (d / "v1").mkdir(parents=True)
    stale = time.time() - 3600
    os.utime(old, (stale, stale))
    assert AdapterFolders.sweep(tmp_path) == [tmp_path / "0123abcd", tmp_path / "dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4567efgh", "live"]
    assert live.folder(1).is_dir()


class _Policy:
    """What ``PolicyReplica.load_policy`` touches of the vLLM policy."""

    def __init__(self) -> None:
        self.stats = SimpleNamespace(generated_tokens=0, prefix_cache_hit_rate=0.0)
        self.served: list[str | None] = []

    def load_policy(self, version: int, folder: str | None) -> int:
        assert folder is None or (Path(folder) / "adapter_model.safetensors").is_file()
        self.served.append(folder)
        return version

    def close(self) -> None:
        pass


def _replica(tmp_path) -> PolicyReplica:
    rep = PolicyReplica.__new__(PolicyReplica)  # no engine
    rep.replica_id, rep.policy = "r0", _Policy()
    rep.started, rep.busy_seconds, rep._published_tokens = time.monotonic(), 0.0, 0
    rep._engine_lock = asyncio.Lock()
    rep._adapters = AdapterFolders("inc", root=tmp_path)
    return rep


def test_a_replica_keeps_only_the_adapter_it_serves_and_none_after_shutdown(tmp_path):
    rep = _replica(tmp_path)

    async def switch_versions():
        for v in (1, 2, 3):
            assert await rep.load_policy(v, PAYLOAD) == v

    asyncio.run(switch_versions())
    served = Path(rep.policy.served[-1])
    assert served == tmp_path / "inc" / "v3"
    assert [p.name for p in (tmp_path / "inc").iterdir() if p.is_dir()] == ["v3"]
    rep.shutdown()
    assert list(tmp_path.iterdir()) == []
