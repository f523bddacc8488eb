"""A workflow manager's side of the pools: its tasks waiting in pools' lines for a
slot, the grants that start them, and the slots its runs took at submission, given back
once their tasks' calls have ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import ray

from executor.config import StoreConfig, handles
from executor.pools import POOL_LEASE_TTL
from executor.stages import TaskContext

log = logging.getLogger(__name__)

#: Seconds between looks at a pool's line while this manager has tasks waiting in it:
#: slots freed by processes that could not reach it are seen this late at most.
POOL_POLL = 1.0


class PoolSlots:
    """This manager's tasks waiting for pool slots and their grants, and the slots its
    ended runs took at submission, until they are given back.

    The lines live in the database, so a pool's limits hold across every process on it.
    A worker that gives a slot back while tasks wait wakes the manager (``freed``); it
    also looks every ``POOL_POLL`` seconds, and when a rate-limited pool's next start is
    due.
    """

    def __init__(self, config: StoreConfig, owner: str) -> None:
        self.config = config
        self.owner = owner
        #: pool -> (workflow_id, task_id) -> its grant.
        self._waiting: dict[str, dict[tuple[str, str], asyncio.Future[None]]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._granters: dict[str, asyncio.Task[None]] = {}
        #: Ended runs' slots taken at submission whose tasks' calls have not ended yet.
        self.giving_back: set[asyncio.Task[None]] = set()

    async def wait(self, ctx: TaskContext) -> None:
        pool = ctx.options.pool
        assert pool is not None
        store = handles(self.config).store
        key = (ctx.workflow_id, ctx.task_id)
        if await asyncio.to_thread(
            store.queue_for_slot,
            pool,
            *key,
            ctx.options.priority,
            self.owner,
            POOL_LEASE_TTL,
        ):
            return  # granted already (a call run again)
        granted = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(pool, {})[key] = granted
        self.freed(pool)
        try:
            await granted
        except asyncio.CancelledError:
            # Its place in line, or the slot granted meanwhile, goes back.
            await asyncio.to_thread(store.release_slot, pool, *key)
            raise
        finally:
            waiting = self._waiting.get(pool, {})
            waiting.pop(key, None)
            if not waiting:
                self._waiting.pop(pool, None)

    def give_back(self, workflow_id: str, holding: dict[str, ray.ObjectRef]) -> None:
        """Once a run has ended, give back the slots taken at its submission that their
        tasks' finishes did not: a worker that died, a call cancelled before it ran.
        Each goes back once its task's call has ended (a run that failed may leave
        others running); until then this manager renews it."""
        if holding:
            task = asyncio.create_task(self._give_back(workflow_id, dict(holding)))
            self.giving_back.add(task)
            task.add_done_callback(self.giving_back.discard)

    async def _give_back(self, workflow_id: str, holding: dict[str, ray.ObjectRef]) -> None:
        store = handles(self.config).store
        while holding:
            refs = list(holding.values())
            ready, _ = await asyncio.to_thread(
                ray.wait, refs, num_returns=len(refs), timeout=0, fetch_local=False
            )
            done = set(ready)
            ended = [task_id for task_id, ref in holding.items() if ref in done]
            if ended:
                try:
                    pools = await asyncio.to_thread(
                        store.release_slots, workflow_id, self.owner, ended
                    )
                except Exception:  # the database may be restarting; the next poll retries
                    log.exception("giving back the slots of %s failed", workflow_id)
                    pools = set()
                    ended = []
                for task_id in ended:
                    del holding[task_id]
                for pool in pools:
                    self.freed(pool)
            if holding:
                await asyncio.sleep(POOL_POLL)

    def freed(self, pool: str) -> None:
        self._wake.setdefault(pool, asyncio.Event()).set()
        granter = self._granters.get(pool)
        if self._waiting.get(pool) and (granter is None or granter.done()):
            self._granters[pool] = asyncio.create_task(self._grant(pool))

    async def _grant(self, pool: str) -> None:
        store = handles(self.config).store
        wake = self._wake.setdefault(pool, asyncio.Event())
        while self._waiting.get(pool):
            wake.clear()
            next_start = None
            try:
                granted, next_start = await asyncio.to_thread(
                    store.grant_slots, pool, self.owner, POOL_LEASE_TTL
                )
            except Exception:  # the database may be restarting; look again next poll
                log.exception("pool %s: granting slots failed", pool)
                granted = []
            for key in granted:
                waiter = self._waiting.get(pool, {}).get(key)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                else:  # its wait ended meanwhile: the slot goes back
                    await asyncio.to_thread(store.release_slot, pool, *key)
            pause = POOL_POLL
            if next_start is not None:
                pause = min(pause, max(next_start - time.time(), 0.001))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=pause)
