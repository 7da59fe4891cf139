"""The Ballast node agent: a small stand-in for the kubelet that runs Pods as local processes.

It registers a Node (with configurable capacity, `nvidia.com/gpu` included so GPU Jobs schedule),
renews the node's Lease, watches the Pods bound to it and runs each container as a process:
command and args, env (value, secretKeyRef, configMapKeyRef, fieldRef, envFrom), workingDir, and
volumes (emptyDir, configMap, secret, projected service-account token, downwardAPI, hostPath)
bind-mounted at their mountPath inside a private mount namespace. It reports real Pod status, so
the real Job, ReplicaSet and Deployment controllers do the rest.

What differs from a kubelet, on purpose: images are not pulled (the command runs in the project's
environment, with its entrypoints on PATH); every pod gets its own loopback address (127.1.x.y) as
its pod IP but shares the host's network namespace; resources are not enforced; startup probes
are not run; service-account tokens are issued once per pod start and not refreshed; a
termination message is read from a file only where one can be offered without touching the host's
/dev (inside a volume, or bind-mounted outside /dev: see `termination`).

Run it with `python -m ballast_dev.cluster.nodeagent --help` (the local cluster in
`ballast_dev.cluster.plane` does). The decisions are pure functions, table-tested in
tests/unit/test_nodeagent.py; the I/O stays in a few thin modules:

- pure: `status` (container statuses, the pod's phase and conditions), `lifecycle` (restarts,
  back-off, what a pod event asks for), `env` (the environment and `$(VAR)` expansion), `volumes`
  (each volume's files, the mounts and their order), `probes` (when to probe, what a result
  means), `termination` (where a message file lives, which message is reported), `node` (the Node
  and Lease bodies), `spec` (the client's models read into their inputs);
- I/O: `sources` (reads ConfigMaps, Secrets and tokens; writes volumes), `containers` (processes
  and probes), `worker` (one pod), `agent` (the node, its Lease, the pod watch), `__main__`.
"""
