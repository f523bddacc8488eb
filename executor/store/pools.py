"""The store's part for concurrency pools: their limits, their slots held and waited
for, the recent starts of rate-limited ones; and the counters Prometheus reads.

A slot is a row of ``gnomon_pool_slots``. ``held`` rows are leases: a holder whose lease
ran out, or whose process is gone from this host, no longer counts, and its row is
dropped by the next transaction that counts the pool's holders. ``queued`` rows wait in
line (highest priority, then first come) for the workflow manager that queued them to
grant them a slot. Every transaction that takes or grants a slot first locks the pool's
row (SQLite's write transactions are exclusive already), so two never take the last one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from executor.errors import PoolNotFoundError
from executor.status import TaskStatus
from executor.store.leases import lease_lost
from executor.store.records import PoolRecord, Rate, SlotWait
from executor.store.statements import FINISHED, HELD, QUEUED
from executor.store.tasks import TaskStore


def _line_seq() -> int:
    """A place in a pool's line: later waiters stand behind earlier ones."""
    return time.time_ns()


class PoolStore(TaskStore):
    # ------------------------------------------------------------------ pools

    def set_pool(self, name: str, slots: int, rate: Rate | None) -> PoolRecord:
        p = self.tables.pools
        values = {
            "slots": slots,
            "rate_limit": None if rate is None else rate.limit,
            "rate_period": None if rate is None else rate.period_s,
            "updated_at": self.clock(),
        }

        def write() -> None:
            with self._write() as conn:
                upsert = self.sql.insert(p).values(name=name, **values)
                conn.execute(upsert.on_conflict_do_update(index_elements=[p.c.name], set_=values))

        self._retrying(write)
        return self.get_pool(name)

    def get_pool(self, name: str) -> PoolRecord:
        found = self._pools([name])
        if not found:
            raise PoolNotFoundError(name)
        return found[0]

    def list_pools(self) -> list[PoolRecord]:
        return self._pools(None)

    def missing_pools(self, names: Sequence[str]) -> set[str]:
        if not names:
            return set()
        p = self.tables.pools
        with self._read() as conn:
            found = set(
                conn.execute(sa.select(p.c.name).where(p.c.name.in_(list(names)))).scalars()
            )
        return set(names) - found

    def _pools(self, names: Sequence[str] | None) -> list[PoolRecord]:
        p, s = self.tables.pools, self.tables.pool_slots
        query = sa.select(p).order_by(p.c.name)
        counts = (
            sa.select(s.c.pool, s.c.state, sa.func.count())
            .where(s.c.lease_expires_at > self.clock())
            .group_by(s.c.pool, s.c.state)
        )
        if names is not None:
            query = query.where(p.c.name.in_(list(names)))
            counts = counts.where(s.c.pool.in_(list(names)))
        with self._read() as conn:
            rows = conn.execute(query).all()
            tally = {(pool, state): n for pool, state, n in conn.execute(counts)}
        return [
            PoolRecord(
                name=row.name,
                slots=row.slots,
                rate=_rate(row),
                used=tally.get((row.name, HELD), 0),
                queued=tally.get((row.name, QUEUED), 0),
            )
            for row in rows
        ]

    # ------------------------------------------------------------------ slots

    def try_slot(
        self, pool: str, workflow_id: str, task_id: str, priority: int, owner: str, ttl: float
    ) -> bool:
        sql = self.sql.pools
        now = self.clock()
        params = _slot_params(pool, workflow_id, task_id, now, owner, ttl, priority)
        if sql.direct_take is not None:
            # A free slot: one statement. Anything else (none free, a holder to drop, a
            # rate, a slot held already, no such pool) takes the long way.
            take = sql.direct_take
            if self._retrying(lambda: self._send(take, params)):
                return True

        def write() -> bool:
            with self._write() as conn:
                if self.direct is None and self._run_in(conn, sql.forms.take, params):
                    self._run_in(conn, sql.forms.insert_held, params)
                    return True
                return self._try_slot_in(conn, params)

        return self._retrying(write)

    def _try_slot_in(self, conn: Connection, params: dict[str, Any]) -> bool:
        """``try_slot`` the long way, in ``conn``'s transaction: the pool's row locked,
        dead holders dropped, its rate applied, ``used`` counted again."""
        sql = self.sql.pools
        pool, now = params["s_pool"], params["s_now"]
        limits = self._locked_pool(conn, pool)
        if limits is None:
            raise PoolNotFoundError(pool)
        outlook = conn.execute(sql.outlook, params).one()
        if outlook.mine == HELD:  # granted by a manager, or held by its last try
            return self._start_held(conn, params, limits)
        if outlook.ahead or self._live_holders(conn, pool, now) >= limits.slots:
            return False
        if self._starts_allowed(conn, pool, limits.rate, now)[0] < 1:
            return False
        conn.execute(sql.insert_held if outlook.mine is None else sql.hold, params)
        conn.execute(sql.recount, params)
        self._started(conn, pool, limits.rate, [(params["s_workflow"], params["s_task"])], now)
        return True

    def _start_held(self, conn: Connection, params: dict[str, Any], limits: PoolRecord) -> bool:
        """A task that holds a slot starts: its holder is ``s_owner`` from now on. In a
        rate-limited pool its start counts from now rather than from its grant, so the
        window holds for when tasks actually start; if it started so late that the
        window filled meanwhile, it goes back to the head of the line (False)."""
        sql, s, starts = self.sql.pools, self.tables.pool_slots, self.tables.pool_starts
        pool, now = params["s_pool"], params["s_now"]
        if limits.rate is not None:
            conn.execute(
                starts.delete().where(
                    starts.c.pool == pool,
                    starts.c.workflow_id == params["s_workflow"],
                    starts.c.task_id == params["s_task"],
                )
            )
            if self._starts_allowed(conn, pool, limits.rate, now)[0] < 1:
                conn.execute(s.update().where(sql.key).values(state=QUEUED), params)
                conn.execute(sql.recount, params)
                return False
            self._started(conn, pool, limits.rate, [(params["s_workflow"], params["s_task"])], now)
        conn.execute(sql.hold, params)
        return True

    def take_slots(
        self, pool: str, workflow_id: str, tasks: Sequence[tuple[str, int]], owner: str, ttl: float
    ) -> list[str]:
        sql = self.sql.pools
        first = sorted(tasks, key=lambda task: -task[1])  # stable: first come within one

        def write() -> list[str]:
            with self._write() as conn:
                now = self.clock()
                limits = self._locked_pool(conn, pool)
                if limits is None:
                    raise PoolNotFoundError(pool)
                if (
                    limits.rate is not None
                    or conn.execute(sql.waiting, {"s_pool": pool, "s_now": now}).scalar()
                ):
                    return []
                taken = first[: max(limits.slots - self._live_holders(conn, pool, now), 0)]
                if taken:
                    rows = [
                        _slot_params(pool, workflow_id, task_id, now, owner, ttl, priority)
                        for task_id, priority in taken
                    ]
                    conn.execute(sql.insert_held, rows)
                    conn.execute(sql.recount, {"s_pool": pool})
                return [task_id for task_id, _ in taken]

        return self._retrying(write)

    def queue_for_slot(
        self, pool: str, workflow_id: str, task_id: str, priority: int, owner: str, ttl: float
    ) -> bool:
        s, t = self.tables.pool_slots, self.tables.tasks
        key = self._slot_key(pool, workflow_id, task_id)

        def write() -> bool:
            with self._write() as conn:
                now = self.clock()
                if self._locked_pool(conn, pool) is None:
                    raise PoolNotFoundError(pool)
                mine = conn.execute(sa.select(s.c.state).where(key)).scalar()
                if mine == HELD:
                    return True
                waiting = {"owner": owner, "lease_expires_at": now + ttl, "priority": priority}
                if mine is None:
                    conn.execute(
                        s.insert().values(
                            pool=pool,
                            workflow_id=workflow_id,
                            task_id=task_id,
                            state=QUEUED,
                            seq=_line_seq(),
                            queued_at=now,
                            **waiting,
                        )
                    )
                else:  # queued before (its manager died): it keeps its place in line
                    conn.execute(s.update().where(key).values(**waiting))
                conn.execute(
                    t.update()
                    .where(t.c.workflow_id == workflow_id, t.c.task_id == task_id)
                    .where(t.c.status.not_in(FINISHED))
                    .values(status=TaskStatus.QUEUED.value)
                )
                return False

        return self._retrying(write)

    def grant_slots(
        self, pool: str, owner: str, ttl: float
    ) -> tuple[list[tuple[str, str]], float | None]:
        s, t = self.tables.pool_slots, self.tables.tasks

        def write() -> tuple[list[tuple[str, str]], float | None]:
            with self._write() as conn:
                now = self.clock()
                limits = self._locked_pool(conn, pool)
                if limits is None:
                    return [], None
                free = limits.slots - self._live_holders(conn, pool, now)
                allowed, next_start = self._starts_allowed(conn, pool, limits.rate, now)
                room = min(free, allowed)
                if room < 1:
                    return [], next_start if free > 0 else None
                # The head of the line, whoever queued it: a manager grants its own only,
                # so the line keeps its order across processes.
                head = conn.execute(
                    sa.select(s.c.workflow_id, s.c.task_id, s.c.owner, s.c.queued_at)
                    .where(s.c.pool == pool, s.c.state == QUEUED, s.c.lease_expires_at > now)
                    .order_by(s.c.priority.desc(), s.c.seq)
                    .limit(room)
                ).all()
                mine = [row for row in head if row.owner == owner]
                for row in mine:
                    conn.execute(
                        s.update()
                        .where(self._slot_key(pool, row.workflow_id, row.task_id))
                        .values(state=HELD, lease_expires_at=now + ttl)
                    )
                    waited = max(now - (row.queued_at or now), 0.0)
                    conn.execute(
                        t.update()
                        .where(t.c.workflow_id == row.workflow_id, t.c.task_id == row.task_id)
                        .where(t.c.status.not_in(FINISHED))
                        .values(
                            status=sa.case(
                                (t.c.status == TaskStatus.QUEUED.value, TaskStatus.PENDING.value),
                                else_=t.c.status,
                            ),
                            queued_s=sa.func.coalesce(t.c.queued_s, 0.0) + waited,
                        )
                    )
                if mine:
                    conn.execute(self.sql.pools.recount, {"s_pool": pool})
                self._started(
                    conn, pool, limits.rate, [(row.workflow_id, row.task_id) for row in mine], now
                )
                if limits.rate is not None and mine and len(mine) >= allowed:
                    _, next_start = self._starts_allowed(conn, pool, limits.rate, now)
                return [(row.workflow_id, row.task_id) for row in mine], next_start

        return self._retrying(write)

    def release_slot(self, pool: str, workflow_id: str, task_id: str) -> bool:
        sql = self.sql.pools
        params = _slot_params(pool, workflow_id, task_id, self.clock())
        if sql.direct_release is not None:
            release = sql.direct_release
            return self._retrying(lambda: bool(self._send(release, params)[0][0]))

        def write() -> bool:
            with self._write() as conn:
                return self._slot_given_back(conn, params)[0]

        return self._retrying(write)

    def release_slots(
        self,
        workflow_id: str,
        owner: str | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> set[str]:
        s = self.tables.pool_slots
        mine = [s.c.workflow_id == workflow_id]
        if owner is not None:
            mine.append(s.c.owner == owner)
        if task_ids is not None:
            mine.append(s.c.task_id.in_(list(task_ids)))
        with self._read() as conn:  # usually none are left: no write then
            if not conn.execute(sa.select(sa.exists().where(*mine))).scalar():
                return set()

        def write() -> set[str]:
            with self._write() as conn:
                query = s.delete().where(*mine).returning(s.c.pool)
                pools = {row.pool for row in conn.execute(query)}
                for pool in sorted(pools):
                    conn.execute(self.sql.pools.recount, {"s_pool": pool})
                return pools

        return self._retrying(write)

    def renew_slots(self, owner: str, ttl: float) -> None:
        s = self.tables.pool_slots

        def write() -> None:
            with self._write() as conn:
                conn.execute(
                    s.update().where(s.c.owner == owner).values(lease_expires_at=self.clock() + ttl)
                )

        self._retrying(write)

    def slot_waits(self, workflow_id: str) -> dict[str, SlotWait]:
        s = self.tables.pool_slots
        with self._read() as conn:
            mine = conn.execute(
                sa.select(s.c.pool, s.c.task_id).where(
                    s.c.workflow_id == workflow_id, s.c.state == QUEUED
                )
            ).all()
            if not mine:
                return {}
            pools = sorted({row.pool for row in mine})
            line = conn.execute(
                sa.select(s.c.pool, s.c.workflow_id, s.c.task_id)
                .where(s.c.pool.in_(pools), s.c.state == QUEUED)
                .where(s.c.lease_expires_at > self.clock())
                .order_by(s.c.pool, s.c.priority.desc(), s.c.seq)
            ).all()
        places: dict[tuple[str, str, str], int] = {}
        for row in line:
            ahead = sum(1 for key in places if key[0] == row.pool)
            places[(row.pool, row.workflow_id, row.task_id)] = ahead
        return {
            row.task_id: SlotWait(row.pool, places.get((row.pool, workflow_id, row.task_id), 0))
            for row in mine
        }

    # ---------------------------------------------------------------- counters

    def count(self, counts: dict[str, int]) -> None:
        c = self.tables.counters
        rows = [{"name": name, "value": n} for name, n in sorted(counts.items()) if n]
        if not rows:
            return

        def write() -> None:
            with self._write() as conn:
                upsert = self.sql.insert(c)
                conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=[c.c.name],
                        set_={c.c.value: c.c.value + upsert.excluded.value},
                    ),
                    rows,
                )

        self._retrying(write)

    def counters(self) -> dict[str, int]:
        c = self.tables.counters
        with self._read() as conn:
            return {
                name: int(value) for name, value in conn.execute(sa.select(c.c.name, c.c.value))
            }

    # ---------------------------------------------------------------- helpers

    def _slot_key(self, pool: str, workflow_id: str, task_id: str) -> Any:
        s = self.tables.pool_slots
        return sa.and_(s.c.pool == pool, s.c.workflow_id == workflow_id, s.c.task_id == task_id)

    def _locked_pool(self, conn: Connection, pool: str) -> PoolRecord | None:
        """The pool's limits, its row locked until the transaction ends."""
        row = conn.execute(self.sql.pools.limits, {"s_pool": pool}).first()
        return None if row is None else PoolRecord(name=pool, slots=row.slots, rate=_rate(row))

    def _live_holders(self, conn: Connection, pool: str, now: float) -> int:
        """How many slots of the pool live holders hold; the rows of the others (lease
        run out, or process gone from this host) are dropped."""
        sql = self.sql.pools
        rows = conn.execute(sql.holders, {"s_pool": pool}).all()
        dead = [row for row in rows if lease_lost(row.owner, row.lease_expires_at, now)]
        for row in dead:
            conn.execute(
                sql.drop_holder,
                {**_slot_params(pool, row.workflow_id, row.task_id), "s_owner": row.owner},
            )
        if dead:
            conn.execute(sql.recount, {"s_pool": pool})
        return len(rows) - len(dead)

    def _starts_allowed(
        self, conn: Connection, pool: str, rate: Rate | None, now: float
    ) -> tuple[int, float | None]:
        """How many more tasks of the pool may start now under its rate, and, if none
        may, when the next one may."""
        if rate is None:
            return 1 << 30, None
        sql = self.sql.pools
        conn.execute(sql.prune_starts, {"s_pool": pool, "s_window": now - rate.period_s})
        recent = list(conn.execute(sql.recent_starts, {"s_pool": pool}).scalars())
        allowed = rate.limit - len(recent)
        if allowed >= 1:
            return allowed, None
        return allowed, recent[len(recent) - rate.limit] + rate.period_s

    def _started(
        self,
        conn: Connection,
        pool: str,
        rate: Rate | None,
        tasks: list[tuple[str, str]],
        now: float,
    ) -> None:
        if rate is not None and tasks:
            conn.execute(
                self.sql.pools.insert_start,
                [_slot_params(pool, workflow_id, task_id, now) for workflow_id, task_id in tasks],
            )


def _slot_params(
    pool: str,
    workflow_id: str,
    task_id: str,
    now: float = 0.0,
    owner: str | None = None,
    ttl: float = 0.0,
    priority: int = 0,
) -> dict[str, Any]:
    """The parameters of ``PoolStatements``."""
    return {
        "s_pool": pool,
        "s_workflow": workflow_id,
        "s_task": task_id,
        "s_now": now,
        "s_owner": owner,
        "s_lease": now + ttl,
        "s_priority": priority,
        "s_seq": _line_seq(),
        "s_next": None,
    }


def _rate(row: Any) -> Rate | None:
    if row.rate_limit is None or row.rate_period is None:
        return None
    return Rate(limit=int(row.rate_limit), period_s=float(row.rate_period))
