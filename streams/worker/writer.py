"""One batch of raw Kafka messages through the pure core into Redis.

The writer decodes and validates with the core, loads the batch's customers from
Redis shard by shard, lets the core settle each shard's events (dedup, time gates, state
update, alert rules, standings) into deltas, and writes each shard's deltas atomically,
together with the outputs they produced (score cards, alerts, dead letters) into the
shard's outbox (streams/state/outbox.py): what is published is what was committed.
No scoring rule lives here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson

from scoring.account_alerts import AccountSnapshot, evaluate_account
from scoring.config import Config
from scoring.contributions import ANY_FEATURE
from scoring.deltas import Settled, settle_batch, settle_due
from scoring.engine import Outcome, Result
from scoring.events import Event
from scoring.messages import unpack
from scoring.scores import account_weights
from scoring.segment_kpis import kpi_segments
from scoring.standing import activity_counted_from
from scoring.windows import retained_from_bucket
from streams.state import alert_work
from streams.state.cache import StateCache
from streams.state.layout import SHARDS, Keys
from streams.state.outbox import Kind, Output, account_alert_output, alert_output, dead_letter_output, score_output
from streams.state.ports import BatchStore, Loaded
from streams.worker.batch import Incoming, Written


def dead_letter(message: Incoming, result: Result, now_ms: int) -> Output:
    """The DLQ output of a rejected message (or of the event at `message.index` inside it)."""
    return dead_letter_output(message.value, message.key, result.reason.value, result.detail,  # type: ignore[union-attr]
                              result.field, message.topic, message.partition, message.offset, now_ms, message.index)


PUBLISH_ORDER = {Kind.DEAD_LETTER: 0, Kind.SCORE: 1, Kind.ALERT: 2}


class BatchWriter:
    """`outputs=False` (replay) records no outputs: a rebuild publishes nothing. `remember`: how
    many customers the writer keeps as it last wrote them (streams.state.cache; 0: none)."""

    def __init__(self, config: Config, store: BatchStore, outbox_grace_ms: int = 30_000, outputs: bool = True,
                 remember: int = 10_000) -> None:
        self.config = config
        self.store = store
        self.outbox_grace_ms = outbox_grace_ms
        self.outputs = outputs
        self.cache = StateCache(remember)

    async def _load(self, customer_ids: list[str], event_ids: dict[str, list[str]] | None = None) -> Loaded:
        """The customers, those this writer remembers by their write token only."""
        remembered = self.cache.take(customer_ids)
        loaded = await self.store.load(customer_ids, event_ids, remembered)
        self.cache.stale += len(loaded.stale)
        self.cache.hits += len(remembered) - len(loaded.stale)
        self.cache.misses += len(set(customer_ids)) - len(remembered)
        return loaded

    async def write(self, batch: list[Incoming], now_ms: int, confirm: bool = True,
                    ready: Callable[[], Awaitable[object]] | None = None) -> Written:
        """The batch into Redis. `confirm=False`: its writes are not confirmed by the replicas yet
        (the caller confirms `Written.shards`); `ready`: awaited before anything is written (the
        previous batch's confirmation), after the batch is read and scored."""
        decoded = [(message, item) for message in batch for item in unpack(message.value, self.config)]

        def rejected(position: int) -> Incoming:
            """The message to dead-letter for the event at `position`."""
            message, item = decoded[position]
            if item.index is None:
                return message
            # an event inside a batch message is dead-lettered with its own bytes and position
            return replace(message, value=item.original(message.value), index=item.index)

        sources = [i for i, (_, item) in enumerate(decoded) if item.event is not None]
        events = [decoded[i][1].event for i in sources]
        clocks = [decoded[i][0].timestamp_ms or now_ms for i in sources]

        # the customers of a state shard share a hash slot: each shard's changes are one atomic
        # write (and on a single Redis, the whole batch is one)
        by_shard: dict[int, list[int]] = {}
        for position, event in enumerate(events):
            by_shard.setdefault(Keys.shard_of(event.customer_id), []).append(position)

        def outputs_of(positions: list[int], settled: Settled) -> list[tuple[int | str, Output]]:
            """(message position or customer, output) of one shard's settled events."""
            if not self.outputs:
                return []
            made: list[tuple[int | str, Output]] = [
                (sources[p], dead_letter(rejected(sources[p]), r, now_ms))
                for p, r in zip(positions, settled.results) if r.outcome is Outcome.REJECTED]
            made += [(card.customer_id, score_output(card)) for card in settled.cards]
            return made + [(alert.customer_id, alert_output(alert)) for alert in settled.alerts]

        undecodable: dict[int, list[tuple[int | str, Output]]] = {}   # rejected before any customer is known
        for position, (message, item) in enumerate(decoded):
            if item.event is None and self.outputs:
                result = Result.rejected(item.rejection)  # type: ignore[arg-type]
                output = dead_letter(rejected(position), result, now_ms)
                undecodable.setdefault(Keys.shard_of(output.output_id), []).append((position, output))

        outcomes: list[Result | None] = [None] * len(events)
        processed = Written(now_ms=now_ms)
        made: list[tuple[int | str, int, Output]] = []
        for shard, positions, settled, outputs in await self._apply_shards(by_shard, events, clocks, now_ms, outputs_of,
                                                                     undecodable, confirm, ready):
            processed.shards.add(shard)
            for position, result in zip(positions, settled.results):
                outcomes[position] = result
            processed.alerts += settled.alerts
            processed.stale_alerts += settled.stale_alerts
            processed.cards += settled.cards
            made += [(ref, shard, output) for ref, output in outputs]

        # outputs in the order of each customer's first accepted event (as the core orders them);
        # dead letters first, in message order
        first: dict[str, int] = {}
        for position, result in enumerate(outcomes):
            if result is not None and result.outcome is Outcome.ACCEPTED:
                first.setdefault(events[position].customer_id, position)
        processed.cards.sort(key=lambda card: first[card.customer_id])
        processed.alerts.sort(key=lambda alert: first[alert.customer_id])
        made.sort(key=lambda entry: (PUBLISH_ORDER[entry[2].kind], entry[0] if isinstance(entry[0], int)
                                     else first[entry[0]]))
        processed.outputs = [(shard, output) for _, shard, output in made]

        applied = iter(outcomes)
        for position, (message, item) in enumerate(decoded):
            result = next(applied) if item.event is not None else Result.rejected(item.rejection)  # type: ignore[arg-type]
            processed.outcomes.append((rejected(position) if result.outcome is Outcome.REJECTED else message, result))
        return processed

    async def record(self, outputs: list[tuple[int, Output]], now_ms: int, confirm: bool = True) -> set[int]:
        """Outputs made outside a batch's write (a quarantined message's dead letter) into the outbox;
        returns the shards written."""
        by_shard: dict[int, list[Output]] = {}
        for shard, output in outputs:
            by_shard.setdefault(shard, []).append(output)
        return await self.store.write_shards({}, {}, by_shard, now_ms + self.outbox_grace_ms, confirm=confirm)

    async def _apply_shards(self, by_shard: dict[int, list[int]], events: list[Event], clocks: list[int], now_ms: int,
                      outputs_of: Callable[[list[int], Settled], list[tuple[int | str, Output]]],
                      undecodable: dict[int, list[tuple[int | str, Output]]], confirm: bool = True,
                      ready: Callable[[], Awaitable[object]] | None = None
                      ) -> list[tuple[int, list[int], Settled, list[tuple[int | str, Output]]]]:
        """Read the customers, let the core settle each shard's events, write the deltas and outputs.

        Everything is computed before anything is written, so a failure in the core writes
        nothing. A shard whose customers moved on since they were read (another writer) is
        read and settled again, its outputs with it. Returns, per shard written, its event
        positions, what the core settled and the outputs recorded with it.
        """
        pending = dict(by_shard)
        waiting = dict(undecodable)
        done: list[tuple[int, list[int], Settled, list[tuple[int | str, Output]]]] = []
        while pending or waiting:
            wanted: dict[str, list[str]] = {}
            for positions in pending.values():
                for p in positions:
                    wanted.setdefault(events[p].customer_id, []).append(events[p].event_id)
            loaded = await self._load(list(wanted), wanted)

            def settle() -> dict[int, Settled]:
                out = {}
                for shard, positions in pending.items():
                    mine = {events[p].customer_id for p in positions}
                    out[shard] = settle_batch({c: s for c, s in loaded.stored.items() if c in mine},
                                              [events[p] for p in positions], [clocks[p] for p in positions],
                                              now_ms, self.config)
                return out

            # pure CPU work in a thread: the event loop keeps answering the API between GIL turns
            settled = await asyncio.to_thread(settle) if pending else {}
            outputs = {shard: [*waiting.get(shard, ()), *outputs_of(pending[shard], s)] for shard, s in settled.items()}
            for shard, early in waiting.items():
                outputs.setdefault(shard, list(early))
            token = self.store.new_token()
            if ready is not None:
                await ready()
            written = await self.store.write_shards(
                {shard: s.deltas for shard, s in settled.items()}, loaded.read_tokens,
                {shard: [output for _, output in made] for shard, made in outputs.items()},
                now_ms + self.outbox_grace_ms, token, confirm=confirm)
            for shard in written:
                if shard in settled:
                    self.cache.keep(token, settled[shard].stored)
                waiting.pop(shard, None)
                if shard in pending:
                    done.append((shard, pending.pop(shard), settled[shard], outputs[shard]))
                else:
                    done.append((shard, [], Settled(), outputs[shard]))
        return done

    async def sweep(self, now_ms: int, chunk: int = 200) -> Written:
        """Re-score the customers whose standing time alone has changed by now (and only those);
        the alerts that fired are recorded in the outbox with the re-scores' changes."""
        swept = Written(now_ms=now_ms)
        oldest = retained_from_bucket(now_ms, self.config)
        counted_from = activity_counted_from(now_ms, self.config)
        for shard in range(SHARDS):
            await self.store.drop_old_totals(shard, oldest, kpi_segments(self.config))
            await alert_work.trim(self.store, shard, oldest * self.config.scoring.bucket_ms)
            while True:
                due = await self.store.due(shard, now_ms, chunk)
                if not due:
                    break
                loaded = await self._load(due)
                if len(loaded.stored) < len(due):   # gone (a replay deleted them): nothing more is due
                    await self.store.forget_due(shard, [c for c in due if c not in loaded.stored])
                settled = await asyncio.to_thread(settle_due, loaded.stored, now_ms, self.config)
                outputs = [alert_output(alert) for alert in settled.alerts] if self.outputs else []
                token = self.store.new_token()
                if await self.store.write_shards({shard: settled.deltas}, loaded.read_tokens,
                                                 {shard: outputs}, now_ms + self.outbox_grace_ms, token):
                    self.cache.keep(token, settled.stored)
                    swept.alerts += settled.alerts
                    swept.stale_alerts += settled.stale_alerts
                    swept.outputs += [(shard, output) for output in outputs]
                if len(due) < chunk:
                    break
            # after the re-scores, which rewrite the facts (and activity entries) of those due
            await self.store.trim_activity(shard, counted_from, (ANY_FEATURE, *self.config.kpis.features),
                                           kpi_segments(self.config))
        for shard in range(SHARDS):
            while accounts := await self.store.pop_touched_accounts(shard, chunk):
                await self.evaluate_accounts(accounts, now_ms, swept)
        return swept

    async def evaluate_accounts(self, account_ids: list[str], now_ms: int, swept: Written) -> None:
        """Account-level alerts for accounts whose users changed: each account's roll-up from its
        users' stored standings against its snapshot, written with its alerts only if no other
        worker evaluated it in between (then that evaluation stands, and nothing fires twice)."""
        members = await self.store.account_members(account_ids)
        standings = await self.store.standings(sorted({c for users in members.values() for c in users}))
        snapshots = await self.store.account_snapshots(account_ids)
        for account_id in account_ids:
            users = {c: standings[c].es for c in members[account_id]
                     if c in standings and standings[c].account_id == account_id}
            weighed = account_weights([dict(standings[c].traits) for c in users], self.config)
            read_token, raw = snapshots[account_id]
            previous = AccountSnapshot.from_dict(orjson.loads(raw)) if raw else None
            fired, snapshot = evaluate_account(previous, account_id, users, now_ms, self.config,
                                               None if weighed is None else dict(zip(users, weighed)))
            outputs = [account_alert_output(a) for a in fired] if self.outputs else []
            home, written = await self.store.write_account(
                account_id, read_token, orjson.dumps(snapshot.to_dict()), outputs, now_ms + self.outbox_grace_ms,
                self.store.new_token())
            if written:
                swept.account_alerts += fired
                swept.outputs += [(home, output) for output in outputs]
