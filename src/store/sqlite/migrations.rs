//! Schema migrations: an ordered list of SQL scripts; `PRAGMA user_version` records how many
//! have run. Never edit a released migration: append a new one.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: incidents, their occurrences and timelines, raw notifications, jobs.
    r#"
    CREATE TABLE incidents (
        id                  TEXT PRIMARY KEY,
        seq                 INTEGER NOT NULL UNIQUE,  -- creation order: newest-first paging
        key                 TEXT NOT NULL,            -- correlation key
        title               TEXT NOT NULL,
        status              TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
        severity            TEXT,
        service             TEXT,
        impact_start        INTEGER,                  -- times: microseconds since the epoch, UTC
        impact_start_method TEXT NOT NULL,
        fired_at            INTEGER NOT NULL,         -- earliest member startsAt (span start)
        detected_at         INTEGER NOT NULL,
        acknowledged_at     INTEGER,
        acknowledged_by     TEXT,
        resolved_at         INTEGER,
        resolved_by         TEXT,
        span_end            INTEGER,                  -- latest member endsAt; NULL while one fires
        reopen_count        INTEGER NOT NULL,
        received            INTEGER NOT NULL,
        duplicate           INTEGER NOT NULL,
        stale               INTEGER NOT NULL,
        version             INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL
    );
    CREATE INDEX incidents_key_fired ON incidents (key, fired_at);
    CREATE INDEX incidents_status_seq ON incidents (status, seq);
    CREATE INDEX incidents_service_seq ON incidents (service, seq);

    CREATE TABLE occurrences (
        fingerprint   TEXT NOT NULL,
        starts_at     INTEGER NOT NULL,
        incident_id   TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        status        TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
        ends_at       INTEGER,
        alertname     TEXT NOT NULL,
        labels        TEXT NOT NULL,                  -- JSON object
        annotations   TEXT NOT NULL,                  -- JSON object
        generator_url TEXT NOT NULL,
        group_key     TEXT NOT NULL,
        first_seen_at INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL,
        resolved_by   TEXT,
        PRIMARY KEY (fingerprint, starts_at)
    ) WITHOUT ROWID;
    CREATE INDEX occurrences_incident ON occurrences (incident_id);

    CREATE TABLE timeline (
        id          INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        actor       TEXT NOT NULL,
        text        TEXT NOT NULL,
        human       INTEGER NOT NULL                  -- 1: a person's action; 0: derived
    );
    CREATE INDEX timeline_incident ON timeline (incident_id, at);

    -- Raw payloads, each distinct body once: Alertmanager resends unchanged groups
    -- byte for byte (repeat_interval, HA replicas), so most notifications share a body.
    CREATE TABLE payloads (
        id   INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,                   -- SHA-256 of the body
        body BLOB NOT NULL                           -- exactly as received
    );

    CREATE TABLE notifications (
        id          INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        receiver    TEXT NOT NULL,
        status      TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        alerts      INTEGER NOT NULL,
        payload_id  INTEGER NOT NULL REFERENCES payloads (id)
    );
    CREATE INDEX notifications_payload ON notifications (payload_id);
    CREATE INDEX notifications_received ON notifications (received_at);

    CREATE TABLE incident_sequences (
        year INTEGER PRIMARY KEY,
        last INTEGER NOT NULL
    );

    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,                    -- enrich, render, notify, ...
        incident_id TEXT REFERENCES incidents (id) ON DELETE CASCADE,
        payload     TEXT NOT NULL,                    -- JSON
        coalesce    INTEGER NOT NULL,                 -- 1: one pending job per (kind, incident)
        state       TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
        run_at      INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        created_at  INTEGER NOT NULL,
        done_at     INTEGER
    );
    CREATE INDEX jobs_due ON jobs (state, run_at);
    CREATE UNIQUE INDEX jobs_coalesced ON jobs (kind, incident_id)
        WHERE coalesce = 1 AND state = 'pending';
    "#,
    // 2: evidence gathered from Prometheus, charts, Slack threads.
    r#"
    CREATE TABLE evidence (
        incident_id  TEXT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
        collected_at INTEGER NOT NULL,
        body         TEXT NOT NULL                    -- JSON: rules, snapshots, impact, SLO, ...
    );
    CREATE TABLE charts (
        incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        svg         TEXT NOT NULL,
        PRIMARY KEY (incident_id, name)
    );
    CREATE TABLE slack_threads (
        incident_id TEXT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
        channel     TEXT NOT NULL,
        ts          TEXT NOT NULL
    );
    CREATE INDEX occurrences_alertname ON occurrences (alertname);
    "#,
    // 3: the reconciler lists firing occurrences.
    r#"
    CREATE INDEX occurrences_firing ON occurrences (fingerprint, starts_at) WHERE status = 'firing';
    "#,
    // 4: claiming a job checks for an earlier unfinished job of the same kind and incident;
    // without this index that check read every pending job (the soak run slowed down as
    // failing jobs piled up). It also serves the cascade when an incident is pruned.
    r#"
    CREATE INDEX jobs_incident ON jobs (incident_id, kind, id);
    -- Each kind's loop claims from its own due jobs, never scanning past other kinds'.
    CREATE INDEX jobs_kind_due ON jobs (state, kind, run_at);
    "#,
    // 5: replicas. A running job belongs to its holder until `lease_until` (a replica that
    // dies leaves it to the others when the lease expires); named leases make the
    // reconciler and the pruner run on one replica at a time; the rendered draft is stored,
    // so every replica serves the same one and knows what it last wrote to disk.
    r#"
    ALTER TABLE jobs ADD COLUMN holder TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
    CREATE TABLE leases (
        name   TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until  INTEGER NOT NULL
    );
    CREATE TABLE drafts (
        incident_id TEXT PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
        markdown    TEXT NOT NULL,
        sha256      TEXT NOT NULL,                    -- hex SHA-256 of `markdown`
        rendered_at INTEGER NOT NULL
    );
    "#,
    // 6: the people's half of the timeline from Slack: delivered event ids (retries are
    // recognised), replies in incident threads (current state; their history is timeline
    // rows), users' names looked up with users.info; threads found by channel.
    r#"
    CREATE TABLE slack_events (
        event_id    TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX slack_events_received ON slack_events (received_at);
    CREATE TABLE slack_messages (
        channel     TEXT NOT NULL,
        ts          TEXT NOT NULL,
        incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
        at          INTEGER NOT NULL,
        user_id     TEXT NOT NULL,
        author      TEXT,                             -- NULL until its event is applied
        text        TEXT NOT NULL,
        captured    INTEGER NOT NULL,                 -- 1: in the timeline
        milestone   TEXT,
        edited_at   INTEGER,
        deleted_at  INTEGER,
        PRIMARY KEY (channel, ts)
    ) WITHOUT ROWID;
    CREATE INDEX slack_messages_incident ON slack_messages (incident_id, at);
    CREATE INDEX slack_threads_channel ON slack_threads (channel, ts);
    CREATE TABLE slack_users (
        user_id    TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        fetched_at INTEGER NOT NULL
    );
    "#,
    // 7: reports read the incidents whose first alert fired in a range of time, and their
    // alerts' names (from the index alone).
    r#"
    CREATE INDEX incidents_fired ON incidents (fired_at);
    CREATE INDEX occurrences_incident_alertname ON occurrences (incident_id, alertname);
    "#,
    // 8: the incidents page lists unresolved incidents first, newest first.
    r#"
    CREATE INDEX incidents_unresolved_seq ON incidents (seq) WHERE status <> 'resolved';
    "#,
    // 9: secrets every replica shares (hex), e.g. the one the pages' form tokens are derived
    // from, so that a form served by one replica is taken by another.
    r#"
    CREATE TABLE secrets (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 10: reports read every incident of their range from one index (`incidents_report`),
    // with its alerts tallied on the incident itself (`alert_tally`; its form:
    // `store::ReportRowsBuilder`), instead of joining occurrences. Saving an incident sets
    // it (`sqlite::ALERT_TALLY_UPDATE`, once per save, not per alert); the triggers below
    // keep it when an alert moves to another incident or is deleted.
    r#"
    ALTER TABLE incidents ADD COLUMN alert_tally TEXT NOT NULL DEFAULT '';
    CREATE TRIGGER occurrences_tally_delete AFTER DELETE ON occurrences BEGIN
        UPDATE incidents SET alert_tally = (
            SELECT CASE WHEN length(CAST(t AS BLOB)) > 1000 THEN '*' ELSE t END FROM (
            SELECT coalesce(group_concat(n || ':' || length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') AS t
            FROM (SELECT alertname, count(*) AS n FROM occurrences WHERE incident_id = OLD.incident_id GROUP BY alertname))) WHERE id = OLD.incident_id;
    END;
    CREATE TRIGGER occurrences_tally_update AFTER UPDATE OF incident_id, alertname ON occurrences
    WHEN OLD.incident_id IS NOT NEW.incident_id OR OLD.alertname IS NOT NEW.alertname BEGIN
        UPDATE incidents SET alert_tally = (
            SELECT CASE WHEN length(CAST(t AS BLOB)) > 1000 THEN '*' ELSE t END FROM (
            SELECT coalesce(group_concat(n || ':' || length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') AS t
            FROM (SELECT alertname, count(*) AS n FROM occurrences WHERE incident_id = OLD.incident_id GROUP BY alertname))) WHERE id = OLD.incident_id;
        UPDATE incidents SET alert_tally = (
            SELECT CASE WHEN length(CAST(t AS BLOB)) > 1000 THEN '*' ELSE t END FROM (
            SELECT coalesce(group_concat(n || ':' || length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') AS t
            FROM (SELECT alertname, count(*) AS n FROM occurrences WHERE incident_id = NEW.incident_id GROUP BY alertname))) WHERE id = NEW.incident_id;
    END;
    UPDATE incidents SET alert_tally = (
            SELECT CASE WHEN length(CAST(t AS BLOB)) > 1000 THEN '*' ELSE t END FROM (
            SELECT coalesce(group_concat(n || ':' || length(CAST(alertname AS BLOB)) || ':' || alertname, ''), '') AS t
            FROM (SELECT alertname, count(*) AS n FROM occurrences WHERE incident_id = incidents.id GROUP BY alertname)));
    CREATE INDEX incidents_report ON incidents (fired_at, service, status, impact_start,
        detected_at, acknowledged_at, resolved_at, reopen_count, seq, alert_tally);
    "#,
];

/// Bring the schema up to date. Refuses a database written by a newer incidentd.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {version} is newer than this incidentd knows ({}); \
             upgrade incidentd",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
