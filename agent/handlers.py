"""The kopf handlers on AppliedWork; they hand every decision to the :class:`agent.runtime.Runtime` in the memo.

kopf watches the AppliedWorks, keeps the finaliser (``work.maestro-py.io/cleanup``) on them, runs the reconcile on
create, on every spec change and after an agent restart (resume), retries what failed with a growing delay,
and runs the finaliser's cleanup when one is deleted.
"""

from __future__ import annotations

from typing import Any

import kopf

from agent import works

registry = kopf.OperatorRegistry()

RETRY_MAX = 60.0


def _delay(retry: int) -> float:
    return float(min(RETRY_MAX, 0.5 * 2**retry))


@kopf.on.login(registry=registry)
async def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    info: kopf.ConnectionInfo = memo.runtime.connection_info()
    return info


def ours(spec: kopf.Spec, memo: Any, **_: Any) -> bool:
    """Only this agent's consumer's works: several agents (or a renamed consumer's leftovers) may share a cluster."""
    return bool(spec.get("consumer") == memo.runtime.settings.consumer)


@kopf.on.event(works.GROUP, works.VERSION, works.PLURAL, when=ours, registry=registry)
async def observe(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.runtime.observe(type, dict(body))


@kopf.on.resume(works.GROUP, works.VERSION, works.PLURAL, when=ours, registry=registry)
@kopf.on.create(works.GROUP, works.VERSION, works.PLURAL, when=ours, registry=registry)
@kopf.on.update(works.GROUP, works.VERSION, works.PLURAL, field="spec", when=ours, registry=registry)
async def reconcile(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    outcome = await memo.runtime.reconcile(dict(body), why="kopf")
    if not outcome.done:
        raise kopf.TemporaryError(outcome.message or "not done yet", delay=_delay(retry))


@kopf.on.delete(works.GROUP, works.VERSION, works.PLURAL, when=ours, registry=registry)
async def finalize(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    outcome = await memo.runtime.finalize(dict(body))
    if not outcome.done:
        raise kopf.TemporaryError(outcome.message or "not done yet", delay=min(5.0, _delay(retry)))
