"""Start the agent: check what it needs (one clear line and exit 1 when something is missing), then run until
SIGTERM/SIGINT.

Startup checks, in order: the broker config file, the apiserver (``/version``), the AppliedWork CRD (installed or
updated with ``--install-crd``, else it must exist), the broker connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent import kube as kube_
from agent import works
from agent.kube import APPLY_PATCH, Kube, KubeError
from agent.runtime import Runtime
from agent.settings import AgentSettings
from protocol import mqtt_config
from protocol.errors import ConfigError, ConnectError

logger = logging.getLogger("agent")


class StartupError(Exception):
    """Printed as one line; the process exits 1."""


class _PlannedRetries(logging.Filter):
    """kopf logs each retry a handler asks for (a work not applied yet, objects still being deleted) as an ERROR,
    "Handler 'finalize' failed temporarily: …"; the agent's own lines and Events say what is going on: DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def run(settings: AgentSettings, *, log_level: str = "info") -> int:
    # NB: each line names the agent's consumer, as the hub's lines name the replica.
    name = settings.consumer.replace("%", "%%")
    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
    narrators = (
        "gmqtt", "protocol.mqtt.gmqtt", "aiohttp.access",
        "kopf.activities.probe", "kopf.activities.authentication", "kopf._core.engines.activities",
    )  # fmt: skip
    for noisy in narrators:
        logging.getLogger(noisy).setLevel(logging.DEBUG if log_level == "debug" else logging.WARNING)
    if log_level != "debug":
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_PlannedRetries())
    try:
        return asyncio.run(_main(settings))
    except StartupError as exc:
        print(f"maestro agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


async def _main(settings: AgentSettings) -> int:
    try:
        config = mqtt_config.load(settings.workload_source_config)
    except (ConfigError, OSError, ValueError) as exc:
        raise StartupError(f"bad broker config {settings.workload_source_config}: {exc}") from None
    try:
        kube = await kube_.connect(settings.kubeconfig, qps=settings.kube_api_qps, burst=settings.kube_api_burst)
    except Exception as exc:
        raise StartupError(f"cannot load the Kubernetes client config: {exc}") from None
    try:
        await _check_cluster(kube, settings)
        runtime = Runtime(settings, kube, config)
        health = await _serve_health(runtime, settings)
        try:
            return await _run(runtime)
        finally:
            await health.cleanup()
    finally:
        await kube.close()


async def _check_cluster(kube: Kube, settings: AgentSettings) -> None:
    try:
        version = await kube.request("GET", "/version", timeout=15)
    except KubeError as exc:
        raise StartupError(
            f"the Kubernetes API server at {kube.host} refused the agent: {exc.code} {exc.message}"
        ) from None
    except Exception as exc:
        raise StartupError(f"cannot reach the Kubernetes API server at {kube.host}: {exc}") from None
    logger.info("Kubernetes API server %s (%s)", kube.host, version.get("gitVersion", "?"))
    if settings.install_crd:
        await _install_crd(kube)
    elif await kube.get(works.CRD, works.CRD_NAME) is None:
        raise StartupError(
            f"the AppliedWork CRD ({works.CRD_NAME}) is not installed: install it with the agent's Helm chart "
            "or start the agent once with --install-crd"
        )
    await _check_rights(kube, settings.namespace)
    try:
        await kube.get(works.SECRET, "probe", settings.namespace)
    except KubeError as exc:
        raise StartupError(f"cannot read Secrets in the agent namespace {settings.namespace}: {exc.message}") from None


def _needed(namespace: str) -> list[tuple[str, str, str, str, str]]:
    """The rights the agent cannot work without, as (verb, group, resource, subresource, namespace): what the
    maestro-agent chart's ClusterRole and Role grant (Events and the CRD watch are optional: warnings only)."""
    aw = works.APPLIED_WORK
    return [
        *((verb, aw.group, aw.resource, "", "") for verb in ("get", "list", "watch", "create", "patch", "delete")),
        ("patch", aw.group, aw.resource, "status", ""),
        *((verb, "", works.SECRET.resource, "", namespace) for verb in ("get", "create", "patch")),
    ]


async def _check_rights(kube: Kube, namespace: str) -> None:
    """One line naming every missing right, instead of a part failing later with a 403 in a log."""
    needed = _needed(namespace)
    try:
        answers = await asyncio.gather(
            *(kube.allowed(v, r, group=g, subresource=sub, namespace=ns) for v, g, r, sub, ns in needed)
        )
    except KubeError as exc:
        logger.warning("could not check the agent's RBAC rights (SelfSubjectAccessReview): %s", exc.message)
        return
    missing = [
        f"{verb} {resource}{'.' + group if group else ''}{'/' + sub if sub else ''}{' in ' + ns if ns else ''}"
        for (verb, group, resource, sub, ns), ok in zip(needed, answers, strict=True)
        if not ok
    ]
    if missing:
        raise StartupError(
            f"RBAC does not let the agent {', '.join(missing)}: grant the maestro-agent chart's ClusterRole and Role"
            " (charts/README.md, RBAC)"
        )


async def _install_crd(kube: Kube) -> None:
    try:
        await kube.request(
            "PATCH",
            works.CRD.path(name=works.CRD_NAME),
            body=works.crd_manifest(),
            content_type=APPLY_PATCH,
            query={"fieldManager": "maestro-agent", "force": True},
        )
    except KubeError as exc:
        raise StartupError(f"cannot install the AppliedWork CRD: {exc.message}") from None
    for _ in range(100):
        crd = await kube.get(works.CRD, works.CRD_NAME)
        conditions = ((crd or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            logger.info("AppliedWork CRD installed")
            return
        await asyncio.sleep(0.1)
    raise StartupError("the AppliedWork CRD was installed but is not Established after 10s")


async def _serve_health(runtime: Runtime, settings: AgentSettings) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        ok = runtime.failed is None and runtime.kopf_ready.is_set()
        body: dict[str, Any] = {
            "status": "ok" if ok else "not ready",
            "broker": "connected" if runtime.link.connected else "disconnected",
            "works": len(runtime.store),
        }
        return web.Response(text=json.dumps(body), status=200 if ok else 503, content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.healthz_host, settings.healthz_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {settings.healthz_host}:{settings.healthz_port} for /healthz: {exc.strerror}"
        ) from None
    return runner


async def _run(runtime: Runtime) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    task = asyncio.create_task(runtime.run(), name="agent:runtime")
    waiter = asyncio.create_task(stopping.wait())
    ready = asyncio.create_task(runtime.kopf_ready.wait())
    await asyncio.wait([task, ready, waiter], return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # NB: kopf installs its own handlers when it starts; ours stop the agent's parts before kopf (see stop()).
        loop.add_signal_handler(sig, stopping.set)
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        await runtime.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
        if isinstance(exc, ConnectError):
            raise StartupError(
                f"cannot connect to the broker {runtime.link.config.host}:{runtime.link.config.port}: {exc}"
            )
        raise exc
    if runtime.failed is not None:
        logger.error("the agent stopped because a part failed: %r", runtime.failed)
        return 1
    logger.info("agent stopped")
    return 0
