"""The kopf side of the operator: watches feed a work queue (runtime), one reconciler per kind
(observe -> policy decides -> act). `run_operator` starts it all."""

from __future__ import annotations

from ballast.handlers.common import Settings


def run_operator(
    *,
    namespaces: list[str],
    clusterwide: bool,
    standalone: bool,
    peering: str | None,
    liveness: str | None,
    http_port: int | None,
    http_host: str,
    settings: Settings,
) -> None:
    import kopf

    from ballast.handlers import startup, watches  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=standalone,
        peering_name=None if standalone else peering,
        clusterwide=clusterwide,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(
            http_port=http_port, http_host=http_host, settings=settings, namespaces=None if clusterwide else namespaces
        ),
    )


__all__ = ["Settings", "run_operator"]
