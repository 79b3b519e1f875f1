"""A local Ray started by the project listens on the loopback interface only."""

from __future__ import annotations

import os

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_local_ray_binds_loopback_only(ray_local):
    import psutil

    node = ray_local.nodes()[0]
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert ray_local.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    listeners = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        listeners += [(proc.name(), c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    names = {name for name, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners  # the check saw Ray's own servers
    public = [(name, addr) for name, addr in listeners if addr.ip not in LOOPBACK]
    assert public == [], f"listening beyond loopback: {public}"
