"""Where a process-start node's replicas run: the `Placement` seam.

A `process-start` node with `replicas: N` (or `placement: {engine: ray}`) is owned by one
`nodes.replica_set.ReplicaSetNode`, the one place that decides the replicas' state (ready,
degraded, down), replaces lost ones and feeds the balancer. *Where* and *how* a replica runs
is a placement's job, behind the small protocol in `base.py`:

    placement = open_placement(spec.placement, node_id)       # local, or ray (imported lazily)
    handle = await placement.start_replica(spec, index, ctx)  # returns once launched
    await handle.wait_ready()      # readiness passed (ServiceError if it failed first)
    handle.name, handle.url, handle.status                     # "llm.0", "http://127.0.0.1:41234", ...
    loss = await handle.wait_lost()  # it is gone: ReplicaLoss(reason, exit_code, final)
    await handle.stop()              # release everything; safe twice
    await placement.close()

- `local.py`: each replica is today's process-start logic (`ProcessStartNode`) on this
  machine: own process group and watchdog, readiness, restart policy, log tail, its own log
  file (`logs/llm.0.log`), its own port (`port: auto`) and, with `resources: {GPU: g}`, its
  own `CUDA_VISIBLE_DEVICES` slice.
- `ray.py` (written by the Ray half, optional extra `flowctl[ray]`): each replica a named,
  non-detached actor in a placement group running the same process-start logic there. It is
  imported only when a flow asks for `engine: ray`; nothing else imports `ray`.

The protocol and the spec of `placement:` are in `base.py`; read its docstrings before
writing a placement.
"""

from __future__ import annotations

from .base import Placement, PlacementSpec, ReplicaContext, ReplicaHandle, ReplicaLoss, open_placement

__all__ = ["Placement", "PlacementSpec", "ReplicaContext", "ReplicaHandle", "ReplicaLoss", "open_placement"]
