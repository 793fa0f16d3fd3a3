"""Versioned migrations (sqlite-utils ``Migrations``). Never edit a released migration: add one."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("findings-hub")


def _run(db: Database, *statements: str) -> None:
    for sql in statements:
        db.execute(sql)


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    _run(
        db,
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            received_at TEXT NOT NULL,
            idempotency_key TEXT,
            content_type TEXT,
            headers TEXT NOT NULL,
            body BLOB NOT NULL,
            verified_by TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'processed', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            processed_at TEXT
        )""",
        "CREATE UNIQUE INDEX events_idempotency ON events (source, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "CREATE INDEX events_pending ON events (seq) WHERE state = 'pending'",
        "CREATE INDEX events_failed ON events (seq) WHERE state = 'failed'",
        """CREATE TABLE findings (
            id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            scanner TEXT,
            tool_id TEXT,
            title TEXT NOT NULL,
            severity TEXT NOT NULL,
            cvss_score REAL,
            cve TEXT NOT NULL DEFAULT '[]',
            cwe TEXT NOT NULL DEFAULT '[]',
            attack_techniques TEXT NOT NULL DEFAULT '[]',
            rule_id TEXT,
            location TEXT,
            description TEXT,
            remediation TEXT,
            asset TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'dismissed')),
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            resolved_at TEXT,
            sla_due_at TEXT,
            sla_breached_at TEXT,
            refs TEXT NOT NULL DEFAULT '[]',
            raw TEXT NOT NULL DEFAULT '{}',
            scope TEXT,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX findings_status ON findings (status, severity)",
        "CREATE INDEX findings_source ON findings (source, scope)",
        "CREATE INDEX findings_sla ON findings (sla_due_at) WHERE status = 'open' AND sla_breached_at IS NULL",
        """CREATE TABLE finding_history (
            seq INTEGER PRIMARY KEY,
            finding_id TEXT NOT NULL REFERENCES findings (id),
            at TEXT NOT NULL,
            event_type TEXT NOT NULL,
            changes TEXT NOT NULL DEFAULT '{}',
            event_id TEXT,
            actor TEXT
        )""",
        "CREATE INDEX finding_history_finding ON finding_history (finding_id, seq)",
        """CREATE TABLE deliveries (
            seq INTEGER PRIMARY KEY,
            route TEXT NOT NULL,
            target TEXT NOT NULL,
            kind TEXT NOT NULL,
            finding_id TEXT,
            event_id TEXT,
            order_key TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            snapshot TEXT,
            payload BLOB,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'in_flight', 'done', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            next_attempt_at TEXT NOT NULL,
            last_attempt_at TEXT,
            last_status INTEGER,
            last_error TEXT,
            done_at TEXT,
            remote_id TEXT
        )""",
        "CREATE INDEX deliveries_due ON deliveries (target, next_attempt_at, seq) WHERE state = 'pending'",
        "CREATE INDEX deliveries_order ON deliveries (target, order_key, seq) WHERE state IN ('pending', 'in_flight')",
        "CREATE INDEX deliveries_state ON deliveries (state, target, seq)",
        """CREATE TABLE delivery_attempts (
            seq INTEGER PRIMARY KEY,
            delivery INTEGER NOT NULL,
            at TEXT NOT NULL,
            duration_ms REAL,
            status INTEGER,
            outcome TEXT NOT NULL,
            reason TEXT
        )""",
        "CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery, seq)",
        """CREATE TABLE external_refs (
            finding_id TEXT NOT NULL,
            target TEXT NOT NULL,
            remote_id TEXT,
            url TEXT,
            remote_status TEXT,
            state TEXT NOT NULL DEFAULT 'creating',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            synced_at TEXT,
            PRIMARY KEY (finding_id, target)
        )""",
        "CREATE INDEX external_refs_target ON external_refs (target, state)",
        """CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT,
            last_used_at TEXT
        )""",
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            result TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            remote_addr TEXT
        )""",
        """CREATE TABLE sync_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    )


@migrations(name="0002_external_refs_by_remote_id")
def refs_by_remote_id(db: Database) -> None:
    """Status sync-back and vendor webhooks find a finding from its ticket id."""
    _run(db, "CREATE INDEX external_refs_remote ON external_refs (target, remote_id)")


@migrations(name="0003_deliveries_dead_index")
def deliveries_dead_index(db: Database) -> None:
    """Every claim and every result changes a delivery's state, and each change also rewrote the full
    (state, target, seq) index: a fifth of a SIEM batch's outbox cost. Pending and in-flight rows have their
    own partial indexes already; dead letters, the one other state read by state, get a small one."""
    _run(db, "DROP INDEX IF EXISTS deliveries_state")
    _run(db, "CREATE INDEX deliveries_dead ON deliveries (seq) WHERE state = 'dead'")


@migrations(name="0004_deliveries_by_event")
def deliveries_by_event(db: Database) -> None:
    """Retention keeps an event while a raw ``event.received`` delivery still reads its body: that check
    looks deliveries up by event id. Finding deliveries carry no event id and stay out of the index."""
    _run(db, "CREATE INDEX deliveries_event ON deliveries (event_id) WHERE event_id IS NOT NULL")


@migrations(name="0005_delivery_snapshots")
def delivery_snapshots(db: Database) -> None:
    """A delivery's finding snapshot (about 1.5 KB) moves to a table of its own. It is written once and read
    once, while the delivery row is rewritten at every claim and every result: with the snapshot inside, each
    rewrite copied it, and a 1,000-row SIEM batch cost 25 µs a row in the outbox; without it, 11 µs."""
    _run(db, "CREATE TABLE delivery_snapshots (delivery INTEGER PRIMARY KEY, snapshot TEXT NOT NULL)",
         "INSERT INTO delivery_snapshots (delivery, snapshot) SELECT seq, snapshot FROM deliveries "
         "WHERE snapshot IS NOT NULL",
         "ALTER TABLE deliveries DROP COLUMN snapshot")


@migrations(name="0006_delivery_lease")
def delivery_lease(db: Database) -> None:
    """A claim holds its rows until ``lease_until``. A row whose holder lost it (its result could not be written,
    its task or process died) goes back to pending once the lease has passed, without a restart. The index holds
    in-flight rows only (a handful), so claims and results pay one small insert and delete for it."""
    _run(db, "ALTER TABLE deliveries ADD COLUMN lease_until TEXT",
         "CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE state = 'in_flight'")


@migrations(name="0007_replay_guard")
def replay_guard(db: Database) -> None:
    """What each source accepted recently: a signed request sent again within its window is answered as a
    duplicate instead of being stored twice (hub/store/replays.py). One 16-byte digest per event, keyed by
    digest, pruned by expiry (no index on it: see replays.prune_step). Beside it, the one-row table
    ``/readyz`` rewrites: a probe that commits without writing a page says ready on a full disk."""
    _run(db, "CREATE TABLE replay_guard (digest BLOB PRIMARY KEY, expires_at REAL NOT NULL, "
             "event_seq INTEGER NOT NULL) WITHOUT ROWID",
         "CREATE TABLE store_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, blob BLOB NOT NULL)")


@migrations(name="0008_event_wait")
def event_wait(db: Database) -> None:
    """An event whose source's API is down waits (still ``pending``) until ``wait_until``, with the reason in
    ``error``; later events of its source wait behind it. The index holds waiting rows only (a handful), so the
    pending read's check for one costs a probe of an almost empty index."""
    _run(db, "ALTER TABLE events ADD COLUMN wait_until TEXT",
         "CREATE INDEX events_waiting ON events (source, seq) WHERE wait_until IS NOT NULL")


@migrations(name="0009_failure_groups")
def failure_groups(db: Database) -> None:
    """The console's failure groups and bulk replays (hub/store/failures.py). A group itself is a query over
    failed deliveries; only what an operator said of it is stored, keyed by (target, error class). A bulk replay
    is a job row: its filter and the bounds that fix its set, and how far it got, so its page survives a restart."""
    _run(db, "CREATE TABLE failure_groups (target TEXT NOT NULL, class TEXT NOT NULL, state TEXT NOT NULL "
             "CHECK (state IN ('open', 'acknowledged', 'resolved', 'ignored')), actor TEXT NOT NULL, "
             "changed_at TEXT NOT NULL, PRIMARY KEY (target, class)) WITHOUT ROWID",
         "CREATE TABLE replay_jobs (seq INTEGER PRIMARY KEY, created_at TEXT NOT NULL, actor TEXT NOT NULL, "
         "filter TEXT NOT NULL, max_seq INTEGER NOT NULL, done_by TEXT NOT NULL, total INTEGER NOT NULL, "
         "replayed INTEGER NOT NULL DEFAULT 0, after INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT "
         "'running' CHECK (state IN ('running', 'cancelled', 'done')), finished_at TEXT)")


@migrations(name="0010_console_indexes")
def console_indexes(db: Database) -> None:
    """What the console's pages filter on and nothing indexed (bench/console.py, 1,000,000 events and 100,000
    findings): an event's page and its deliveries read the steps it made by event id, and a finding's deliveries
    are found by finding id (then, for an event's, by the step's time). Without them each was a scan of
    finding_history or deliveries (100 ms and more a page). Not the findings list's sort by first seen: an index on
    it made the asset filter walk it with a random read per finding (1.2 s against 0.2 s for a rare asset)."""
    _run(db, "CREATE INDEX finding_history_event ON finding_history (event_id) WHERE event_id IS NOT NULL",
         "CREATE INDEX deliveries_finding ON deliveries (finding_id, created_at) WHERE finding_id IS NOT NULL")


@migrations(name="0011_console_sorts")
def console_sorts(db: Database) -> None:
    """The console's lists sort by column with keyset pages (hub/ui/lists.py): each order is an index on (key, id),
    walked from the cursor, so a page reads its rows and no more, however deep. A finding's severity sorts by rank
    (critical 5 .. info 1), and a missing SLA due date sorts after every date: two generated columns (virtual: no
    rewrite of the table, no change to the writes) give the indexes plain columns, which a row value comparison
    seeks in (on an expression index SQLite scans from the start). Delivery attempts change at each claim: one
    index entry moved per claimed row. The next attempt's order is a target's queue, which deliveries_due has.
    The failure groups read the failed deliveries (hub/store/failures.py): a partial index of those, by target,
    instead of a scan of the outbox; a delivery that goes through on its first try never enters it."""
    _run(db, "ALTER TABLE findings ADD COLUMN severity_rank INTEGER GENERATED ALWAYS AS (CASE severity "
             "WHEN 'critical' THEN 5 WHEN 'high' THEN 4 WHEN 'medium' THEN 3 WHEN 'low' THEN 2 WHEN 'info' THEN 1 "
             "ELSE 0 END) VIRTUAL",
         "ALTER TABLE findings ADD COLUMN sla_due_sort TEXT GENERATED ALWAYS AS "
         "(coalesce(sla_due_at, '9999-12-31T23:59:59.999Z')) VIRTUAL",
         "CREATE INDEX findings_by_severity ON findings (severity_rank, id)",
         "CREATE INDEX findings_by_due ON findings (sla_due_sort, id)",
         "CREATE INDEX findings_by_last_seen ON findings (last_seen, id)",
         "CREATE INDEX events_received ON events (received_at, seq)",
         "CREATE INDEX deliveries_attempts ON deliveries (attempts, seq)",
         "CREATE INDEX deliveries_failed ON deliveries (target, seq) WHERE (state = 'dead' OR (state = 'pending' "
         "AND attempts > 0 AND last_error IS NOT NULL))")
