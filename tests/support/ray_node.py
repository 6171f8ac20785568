"""`ray start`, kept on the loopback interface: run as `python ray_node.py start ARGS...`.

Ray's own CLI cannot start a second node that listens on 127.0.0.1 only. Its servers listen
on all interfaces unless their node address is 127.0.0.1, and it keeps 127.0.0.1 only with
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, which also makes `ray start --address` refuse to add
a node ("multi-node clusters are not supported"); without that variable it rewrites
127.0.0.1 (in `--address` and `--node-ip-address`) to the machine's routable address.
Measured with Ray 2.60 (tests/replicas/test_ray_replicas.py). So this runs the same CLI with
that variable set (the servers it starts, and the workers they start, read it and stay on
loopback) and two of the CLI's own decisions undone in this process only: the refusal, and
the rewrite of an address it was given.
"""

from __future__ import annotations

import os
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import ray._private.ray_constants as ray_constants
import ray._private.services as services
from ray.scripts.scripts import main

ray_constants.ENABLE_RAY_CLUSTER = True  # past `ray start --address`'s refusal
services.resolve_ip_for_localhost = lambda host: host  # 127.0.0.1 stays what it was given as

if __name__ == "__main__":
    sys.argv = ["ray", *sys.argv[1:]]
    main()
