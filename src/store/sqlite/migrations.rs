//! Schema migrations: an ordered list of SQL scripts; `PRAGMA user_version` records how many
//! have run. Never edit a released migration: append a new one.

use rusqlite::Connection;

/// The expression of the characters an incident's id, title and alert names contain
/// (`incidents.search_chars`, bit `i` for `sqlite::SEARCH_CHARS`'s character `i`), as `LIKE`
/// sees them: written once, used by the backfills and the triggers. `$id` is what is read of
/// the id: all of it in migration 14, its first two characters from migration 15 on.
macro_rules! search_chars_sql {
    ($id:literal) => {
        concat!("          ((", $id, " LIKE '%a%' OR title LIKE '%a%' OR alertnames LIKE '%a%') << 0)
        | ((", $id, " LIKE '%b%' OR title LIKE '%b%' OR alertnames LIKE '%b%') << 1)
        | ((", $id, " LIKE '%c%' OR title LIKE '%c%' OR alertnames LIKE '%c%') << 2)
        | ((", $id, " LIKE '%d%' OR title LIKE '%d%' OR alertnames LIKE '%d%') << 3)
        | ((", $id, " LIKE '%e%' OR title LIKE '%e%' OR alertnames LIKE '%e%') << 4)
        | ((", $id, " LIKE '%f%' OR title LIKE '%f%' OR alertnames LIKE '%f%') << 5)
        | ((", $id, " LIKE '%g%' OR title LIKE '%g%' OR alertnames LIKE '%g%') << 6)
        | ((", $id, " LIKE '%h%' OR title LIKE '%h%' OR alertnames LIKE '%h%') << 7)
        | ((", $id, " LIKE '%i%' OR title LIKE '%i%' OR alertnames LIKE '%i%') << 8)
        | ((", $id, " LIKE '%j%' OR title LIKE '%j%' OR alertnames LIKE '%j%') << 9)
        | ((", $id, " LIKE '%k%' OR title LIKE '%k%' OR alertnames LIKE '%k%') << 10)
        | ((", $id, " LIKE '%l%' OR title LIKE '%l%' OR alertnames LIKE '%l%') << 11)
        | ((", $id, " LIKE '%m%' OR title LIKE '%m%' OR alertnames LIKE '%m%') << 12)
        | ((", $id, " LIKE '%n%' OR title LIKE '%n%' OR alertnames LIKE '%n%') << 13)
        | ((", $id, " LIKE '%o%' OR title LIKE '%o%' OR alertnames LIKE '%o%') << 14)
        | ((", $id, " LIKE '%p%' OR title LIKE '%p%' OR alertnames LIKE '%p%') << 15)
        | ((", $id, " LIKE '%q%' OR title LIKE '%q%' OR alertnames LIKE '%q%') << 16)
        | ((", $id, " LIKE '%r%' OR title LIKE '%r%' OR alertnames LIKE '%r%') << 17)
        | ((", $id, " LIKE '%s%' OR title LIKE '%s%' OR alertnames LIKE '%s%') << 18)
        | ((", $id, " LIKE '%t%' OR title LIKE '%t%' OR alertnames LIKE '%t%') << 19)
        | ((", $id, " LIKE '%u%' OR title LIKE '%u%' OR alertnames LIKE '%u%') << 20)
        | ((", $id, " LIKE '%v%' OR title LIKE '%v%' OR alertnames LIKE '%v%') << 21)
        | ((", $id, " LIKE '%w%' OR title LIKE '%w%' OR alertnames LIKE '%w%') << 22)
        | ((", $id, " LIKE '%x%' OR title LIKE '%x%' OR alertnames LIKE '%x%') << 23)
        | ((", $id, " LIKE '%y%' OR title LIKE '%y%' OR alertnames LIKE '%y%') << 24)
        | ((", $id, " LIKE '%z%' OR title LIKE '%z%' OR alertnames LIKE '%z%') << 25)
        | ((", $id, " LIKE '%0%' OR title LIKE '%0%' OR alertnames LIKE '%0%') << 26)
        | ((", $id, " LIKE '%1%' OR title LIKE '%1%' OR alertnames LIKE '%1%') << 27)
        | ((", $id, " LIKE '%2%' OR title LIKE '%2%' OR alertnames LIKE '%2%') << 28)
        | ((", $id, " LIKE '%3%' OR title LIKE '%3%' OR alertnames LIKE '%3%') << 29)
        | ((", $id, " LIKE '%4%' OR title LIKE '%4%' OR alertnames LIKE '%4%') << 30)
        | ((", $id, " LIKE '%5%' OR title LIKE '%5%' OR alertnames LIKE '%5%') << 31)
        | ((", $id, " LIKE '%6%' OR title LIKE '%6%' OR alertnames LIKE '%6%') << 32)
        | ((", $id, " LIKE '%7%' OR title LIKE '%7%' OR alertnames LIKE '%7%') << 33)
        | ((", $id, " LIKE '%8%' OR title LIKE '%8%' OR alertnames LIKE '%8%') << 34)
        | ((", $id, " LIKE '%9%' OR title LIKE '%9%' OR alertnames LIKE '%9%') << 35)
        | ((", $id, " LIKE '% %' OR title LIKE '% %' OR alertnames LIKE '% %') << 36)
        | ((", $id, " LIKE '%-%' OR title LIKE '%-%' OR alertnames LIKE '%-%') << 37)
        | ((", $id, " LIKE '%\\_%' ESCAPE '\\' OR title LIKE '%\\_%' ESCAPE '\\' OR alertnames LIKE '%\\_%' ESCAPE '\\') << 38)
        | ((", $id, " LIKE '%.%' OR title LIKE '%.%' OR alertnames LIKE '%.%') << 39)
        | ((", $id, " LIKE '%:%' OR title LIKE '%:%' OR alertnames LIKE '%:%') << 40)
        | ((", $id, " LIKE '%/%' OR title LIKE '%/%' OR alertnames LIKE '%/%') << 41)
        | ((", $id, " LIKE '%\\%%' ESCAPE '\\' OR title LIKE '%\\%%' ESCAPE '\\' OR alertnames LIKE '%\\%%' ESCAPE '\\') << 42)
        | ((", $id, " LIKE '%=%' OR title LIKE '%=%' OR alertnames LIKE '%=%') << 43)
        | ((", $id, " LIKE '%,%' OR title LIKE '%,%' OR alertnames LIKE '%,%') << 44)
        | ((", $id, " LIKE '%(%' OR title LIKE '%(%' OR alertnames LIKE '%(%') << 45)
        | ((", $id, " LIKE '%)%' OR title LIKE '%)%' OR alertnames LIKE '%)%') << 46)
        | ((", $id, " LIKE '%[%' OR title LIKE '%[%' OR alertnames LIKE '%[%') << 47)
        | ((", $id, " LIKE '%]%' OR title LIKE '%]%' OR alertnames LIKE '%]%') << 48)
        | ((", $id, " LIKE '%{%' OR title LIKE '%{%' OR alertnames LIKE '%{%') << 49)
        | ((", $id, " LIKE '%}%' OR title LIKE '%}%' OR alertnames LIKE '%}%') << 50)
        | ((", $id, " LIKE '%\"%' OR title LIKE '%\"%' OR alertnames LIKE '%\"%') << 51)
        | ((", $id, " LIKE '%''%' OR title LIKE '%''%' OR alertnames LIKE '%''%') << 52)
        | ((", $id, " LIKE '%@%' OR title LIKE '%@%' OR alertnames LIKE '%@%') << 53)
        | ((", $id, " LIKE '%#%' OR title LIKE '%#%' OR alertnames LIKE '%#%') << 54)
        | ((", $id, " LIKE '%+%' OR title LIKE '%+%' OR alertnames LIKE '%+%') << 55)
        | ((", $id, " LIKE '%*%' OR title LIKE '%*%' OR alertnames LIKE '%*%') << 56)
        | ((", $id, " LIKE '%&%' OR title LIKE '%&%' OR alertnames LIKE '%&%') << 57)
        | ((", $id, " LIKE '%!%' OR title LIKE '%!%' OR alertnames LIKE '%!%') << 58)
        | ((", $id, " LIKE '%?%' OR title LIKE '%?%' OR alertnames LIKE '%?%') << 59)
        | ((", $id, " LIKE '%<%' OR title LIKE '%<%' OR alertnames LIKE '%<%') << 60)
        | ((", $id, " LIKE '%>%' OR title LIKE '%>%' OR alertnames LIKE '%>%') << 61)")
    };
}

/// The pairs of characters of incidents (`incident_search_pairs`, migration 16): every two
/// characters in a row of the id's first two, of the title and of the alert names,
/// lower-cased as `LIKE` folds them (ASCII letters), into the incident's block (`seq >> 6`).
/// Positions come from `json_each` over an array as long as the text (SQLite has no loop,
/// and a trigger cannot use a `WITH`). `$row` qualifies the columns read (`new.` in a
/// trigger), `$from` is what they are read from (all `incidents` for the fill, nothing in a
/// trigger). Written once, used by the fill and the triggers.
macro_rules! search_pairs_sql {
    ($row:literal, $from:literal) => {
        concat!(
            "
        INSERT INTO incident_search_pairs (pair, block)
            SELECT substr(s.t, j.key + 1, 2), s.b
            FROM (SELECT ",
            $row,
            "seq >> 6 AS b, lower(substr(",
            $row,
            "id, 1, 2)) AS t ",
            $from,
            "
                  UNION ALL SELECT ",
            $row,
            "seq >> 6, lower(",
            $row,
            "title) ",
            $from,
            "
                  UNION ALL SELECT ",
            $row,
            "seq >> 6, lower(",
            $row,
            "alertnames) ",
            $from,
            ") AS s,
                 json_each('[' || replace(hex(zeroblob(max(length(s.t) - 2, 0))), '00', '0,')
                           || '0]') AS j
            WHERE length(s.t) >= 2
            ON CONFLICT DO NOTHING;"
        )
    };
}

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
    // 10: search on the incidents page. `incidents.alertnames` holds the incident's distinct
    // alert names, sorted, joined by a newline, kept by triggers on `occurrences`. The FTS5
    // table `incident_search` (trigram tokenizer: substrings of 3 characters or more, case
    // folded; contentless, its rows are only candidates the query checks on `incidents`)
    // indexes id, title, alert names and status under rowid `-seq` (FTS5 walks its rowids
    // upwards fastest, so newest first), kept by triggers on `incidents`: every write keeps
    // it whole. Both are backfilled here.
    r#"
    ALTER TABLE incidents ADD COLUMN alertnames TEXT NOT NULL DEFAULT '';
    UPDATE incidents SET alertnames = coalesce((
        SELECT group_concat(alertname, char(10)) FROM (
            SELECT DISTINCT alertname FROM occurrences o
            WHERE o.incident_id = incidents.id ORDER BY alertname)), '');

    CREATE TRIGGER occurrences_alertnames_insert AFTER INSERT ON occurrences BEGIN
        UPDATE incidents SET alertnames = coalesce((
            SELECT group_concat(alertname, char(10)) FROM (
                SELECT DISTINCT alertname FROM occurrences o
                WHERE o.incident_id = incidents.id ORDER BY alertname)), '')
        WHERE id = new.incident_id
          AND instr(char(10) || alertnames || char(10), char(10) || new.alertname || char(10)) = 0;
    END;
    CREATE TRIGGER occurrences_alertnames_update AFTER UPDATE OF incident_id, alertname ON occurrences
    WHEN old.incident_id IS NOT new.incident_id OR old.alertname IS NOT new.alertname BEGIN
        UPDATE incidents SET alertnames = coalesce((
            SELECT group_concat(alertname, char(10)) FROM (
                SELECT DISTINCT alertname FROM occurrences o
                WHERE o.incident_id = incidents.id ORDER BY alertname)), '')
        WHERE id IN (old.incident_id, new.incident_id);
    END;
    CREATE TRIGGER occurrences_alertnames_delete AFTER DELETE ON occurrences BEGIN
        UPDATE incidents SET alertnames = coalesce((
            SELECT group_concat(alertname, char(10)) FROM (
                SELECT DISTINCT alertname FROM occurrences o
                WHERE o.incident_id = incidents.id ORDER BY alertname)), '')
        WHERE id = old.incident_id;
    END;

    CREATE VIRTUAL TABLE incident_search USING fts5(
        id, title, alertnames, status,
        content = '', contentless_delete = 1, tokenize = 'trigram');
    INSERT INTO incident_search (rowid, id, title, alertnames, status)
        SELECT -seq, id, title, alertnames, status FROM incidents;

    CREATE TRIGGER incidents_search_insert AFTER INSERT ON incidents BEGIN
        INSERT INTO incident_search (rowid, id, title, alertnames, status)
        VALUES (-new.seq, new.id, new.title, new.alertnames, new.status);
    END;
    CREATE TRIGGER incidents_search_delete AFTER DELETE ON incidents BEGIN
        DELETE FROM incident_search WHERE rowid = -old.seq;
    END;
    CREATE TRIGGER incidents_search_update AFTER UPDATE OF seq, id, title, alertnames, status ON incidents
    WHEN old.seq IS NOT new.seq OR old.id IS NOT new.id OR old.title IS NOT new.title
      OR old.alertnames IS NOT new.alertnames OR old.status IS NOT new.status BEGIN
        DELETE FROM incident_search WHERE rowid = -old.seq;
        INSERT INTO incident_search (rowid, id, title, alertnames, status)
        VALUES (-new.seq, new.id, new.title, new.alertnames, new.status);
    END;
    "#,
    // 11: reports read every incident of their range from one index (`incidents_report`),
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
    // 12: a search term too short for the trigram index (1-2 characters) walks, newest first,
    // one of these narrow covering indexes (one per phase of the incidents page) instead of
    // the incidents' whole rows: they hold what the page's filters and the search test, and
    // `seq` to read the rows of the matches only (`sqlite::find_incidents`). Named `*_search`:
    // each backend's own search index (PostgreSQL's B-tree rows have a size limit a long title
    // could exceed, so its twin adds nothing).
    r#"
    CREATE INDEX incidents_unresolved_search ON incidents (seq, status, id, title, alertnames,
        service, severity, fired_at) WHERE status <> 'resolved';
    CREATE INDEX incidents_resolved_search ON incidents (seq, status, id, title, alertnames,
        service, severity, fired_at) WHERE status = 'resolved';
    "#,
    // 13: reports keep the incidents they read, by block of `fired_at` (`fired_at >> 36`,
    // about 19 hours), in memory (`sqlite::report_cache`); these triggers count each block's
    // changes, so a report re-reads only the blocks changed since it kept them. Any insert
    // or delete, and any update of a column a report reads, bumps the block of the old and
    // of the new row, in the same transaction. A block without a row has not changed since
    // this migration (version 0): nothing to backfill.
    r#"
    CREATE TABLE report_blocks (
        block   INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    );
    CREATE TRIGGER incidents_report_blocks_insert AFTER INSERT ON incidents BEGIN
        INSERT INTO report_blocks (block, version) VALUES (new.fired_at >> 36, 1)
            ON CONFLICT (block) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER incidents_report_blocks_delete AFTER DELETE ON incidents BEGIN
        INSERT INTO report_blocks (block, version) VALUES (old.fired_at >> 36, 1)
            ON CONFLICT (block) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER incidents_report_blocks_update AFTER UPDATE ON incidents
    WHEN old.fired_at IS NOT new.fired_at OR old.service IS NOT new.service
      OR old.status IS NOT new.status OR old.impact_start IS NOT new.impact_start
      OR old.detected_at IS NOT new.detected_at OR old.acknowledged_at IS NOT new.acknowledged_at
      OR old.resolved_at IS NOT new.resolved_at OR old.reopen_count IS NOT new.reopen_count
      OR old.alert_tally IS NOT new.alert_tally OR old.seq IS NOT new.seq BEGIN
        INSERT INTO report_blocks (block, version) VALUES (old.fired_at >> 36, 1)
            ON CONFLICT (block) DO UPDATE SET version = version + 1;
        INSERT INTO report_blocks (block, version) VALUES (new.fired_at >> 36, 1)
            ON CONFLICT (block) DO UPDATE SET version = version + 1;
    END;
    "#,
    // 14: a short term's walk (migration 12) tests each incident's `search_chars` first: which
    // of 62 ASCII characters (`sqlite::SEARCH_CHARS`, bit i for its character i; a letter in
    // either case) its id, title or alert names contain, as `LIKE` sees them. A term that
    // needs a character the incident lacks cannot match it: the walk rejects most incidents
    // with an integer test instead of three `LIKE`s, and tests the rest with them as before.
    // A stored column set by triggers when the id, title or alert names change (an insert, a
    // new title, an alert joining), not computed on every save (186 `LIKE`s); only SQLite has
    // it (`PRAGMA table_info` lists it: the schema comparison and the copy to PostgreSQL
    // leave it out, like the `*_search` indexes, rebuilt here with it after `status`).
    // `incident_search_blocks` goes further: per phase and block of 64 incidents (by `seq`),
    // the characters of all of them, so that a walk skips a block none of whose incidents has
    // the term's characters (most, for a rare letter: 1,563 blocks instead of 99,000 entries).
    // Bits are only ever added (an insert, or a change of the characters, the phase or `seq`
    // ors the incident's into its block): a block keeps a character its incidents lost or
    // took elsewhere, which costs the walk a look into it, never a match.
    concat!(
        r#"
    ALTER TABLE incidents ADD COLUMN search_chars INTEGER NOT NULL DEFAULT 0;
    UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("id"),
        r#"
    );
    DROP INDEX incidents_unresolved_search;
    DROP INDEX incidents_resolved_search;
    CREATE INDEX incidents_unresolved_search ON incidents (seq, status, search_chars, id, title,
        alertnames, service, severity, fired_at) WHERE status <> 'resolved';
    CREATE INDEX incidents_resolved_search ON incidents (seq, status, search_chars, id, title,
        alertnames, service, severity, fired_at) WHERE status = 'resolved';

    CREATE TABLE incident_search_blocks (
        resolved INTEGER NOT NULL,  -- the phase: 1 resolved, 0 open or acknowledged
        block    INTEGER NOT NULL,  -- seq >> 6: 64 incidents in creation order
        chars    INTEGER NOT NULL,  -- search_chars of every incident that was in it, or'ed
        PRIMARY KEY (resolved, block)
    ) WITHOUT ROWID;
    INSERT INTO incident_search_blocks (resolved, block, chars)
        SELECT status = 'resolved', seq >> 6, search_chars FROM incidents WHERE true
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    CREATE TRIGGER incidents_search_chars_insert AFTER INSERT ON incidents BEGIN
        UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("id"),
        r#"
        ) WHERE seq = new.seq;
        INSERT INTO incident_search_blocks (resolved, block, chars)
        VALUES (new.status = 'resolved', new.seq >> 6,
                (SELECT search_chars FROM incidents WHERE seq = new.seq))
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    END;
    CREATE TRIGGER incidents_search_chars_update AFTER UPDATE OF id, title, alertnames ON incidents
    WHEN old.id IS NOT new.id OR old.title IS NOT new.title
      OR old.alertnames IS NOT new.alertnames BEGIN
        UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("id"),
        r#"
        ) WHERE seq = new.seq;
        INSERT INTO incident_search_blocks (resolved, block, chars)
        VALUES (new.status = 'resolved', new.seq >> 6,
                (SELECT search_chars FROM incidents WHERE seq = new.seq))
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    END;
    CREATE TRIGGER incidents_search_blocks_update AFTER UPDATE OF seq, status ON incidents
    WHEN old.seq IS NOT new.seq OR old.status IS NOT new.status BEGIN
        INSERT INTO incident_search_blocks (resolved, block, chars)
        VALUES (new.status = 'resolved', new.seq >> 6,
                (SELECT search_chars FROM incidents WHERE seq = new.seq))
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    END;
    "#
    ),
    // 15: `search_chars` records the characters of the id's first two characters only, with
    // the title's and the alert names' as before. A search matches an id by its start, and
    // the walk's terms are shorter than 3 characters, so a term that matches an id has its
    // characters there; a character further in the id (the digits and `c-` of every
    // `INC-2026-…`) no longer makes every incident a candidate that its `LIKE`s then reject
    // (`7` tested all 100,000 incidents of the benchmark, none matching). The triggers are
    // made again with the new expression; every incident's characters and every block's are
    // computed anew (blocks only gain bits otherwise).
    concat!(
        r#"
    DROP TRIGGER incidents_search_chars_insert;
    DROP TRIGGER incidents_search_chars_update;
    UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("substr(id, 1, 2)"),
        r#"
    );
    DELETE FROM incident_search_blocks;
    INSERT INTO incident_search_blocks (resolved, block, chars)
        SELECT status = 'resolved', seq >> 6, search_chars FROM incidents WHERE true
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    CREATE TRIGGER incidents_search_chars_insert AFTER INSERT ON incidents BEGIN
        UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("substr(id, 1, 2)"),
        r#"
        ) WHERE seq = new.seq;
        INSERT INTO incident_search_blocks (resolved, block, chars)
        VALUES (new.status = 'resolved', new.seq >> 6,
                (SELECT search_chars FROM incidents WHERE seq = new.seq))
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    END;
    CREATE TRIGGER incidents_search_chars_update AFTER UPDATE OF id, title, alertnames ON incidents
    WHEN old.id IS NOT new.id OR old.title IS NOT new.title
      OR old.alertnames IS NOT new.alertnames BEGIN
        UPDATE incidents SET search_chars = (
"#,
        search_chars_sql!("substr(id, 1, 2)"),
        r#"
        ) WHERE seq = new.seq;
        INSERT INTO incident_search_blocks (resolved, block, chars)
        VALUES (new.status = 'resolved', new.seq >> 6,
                (SELECT search_chars FROM incidents WHERE seq = new.seq))
        ON CONFLICT (resolved, block) DO UPDATE SET chars = chars | excluded.chars;
    END;
    "#
    ),
    // 16: a term of two characters finds its blocks by the pair itself. Every incident has
    // the `d` and the `b` of `db` somewhere (`search_chars` cannot tell), but few blocks have
    // `db` in a row: `incident_search_pairs` lists, per block of 64 incidents (by `seq`, both
    // phases together), each pair of characters some incident of it has in its id's first
    // two, title or alert names (`search_pairs_sql!`), so that the walk visits only the
    // blocks that have the term. Pairs are only ever added, as the blocks' characters of 14:
    // a pair an incident lost, or took to another block, costs the walk a look, never a
    // match. When the last incident of a block is deleted (`storage.incident_retention`),
    // the block's pairs and characters go with it, so that both tables level off with the
    // incidents kept rather than grow with every incident there ever was.
    concat!(
        r#"
    CREATE TABLE incident_search_pairs (
        pair  TEXT NOT NULL,     -- two characters, lower-cased as LIKE folds them
        block INTEGER NOT NULL,  -- seq >> 6, as incident_search_blocks
        PRIMARY KEY (pair, block)
    ) WITHOUT ROWID;
"#,
        search_pairs_sql!("", "FROM incidents"),
        r#"
    CREATE TRIGGER incidents_search_pairs_insert AFTER INSERT ON incidents BEGIN
"#,
        search_pairs_sql!("new.", ""),
        r#"
    END;
    CREATE TRIGGER incidents_search_pairs_update AFTER UPDATE OF id, title, alertnames, seq
    ON incidents
    WHEN old.id IS NOT new.id OR old.title IS NOT new.title
      OR old.alertnames IS NOT new.alertnames OR old.seq IS NOT new.seq BEGIN
"#,
        search_pairs_sql!("new.", ""),
        r#"
    END;
    CREATE INDEX incident_search_pairs_block ON incident_search_pairs (block);
    CREATE TRIGGER incidents_search_block_emptied AFTER DELETE ON incidents
    WHEN NOT EXISTS (SELECT 1 FROM incidents WHERE seq >= ((old.seq >> 6) << 6)
                                                AND seq < (((old.seq >> 6) + 1) << 6)) BEGIN
        DELETE FROM incident_search_pairs WHERE block = old.seq >> 6;
        DELETE FROM incident_search_blocks WHERE resolved IN (0, 1) AND block = old.seq >> 6;
    END;
    "#
    ),
    // 17: nothing here. PostgreSQL's 17 brings it what SQLite's 13 brought here (the reports'
    // blocks, `store::report_cache`); recorded so both backends count the same versions.
    "-- no change",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(conn: &Connection, query: &str) -> Vec<i64> {
        conn.prepare(
            "SELECT -rowid FROM incident_search WHERE incident_search MATCH ?1 ORDER BY rowid",
        )
        .unwrap()
        .query_map([query], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    fn alertnames(conn: &Connection, seq: i64) -> String {
        conn.query_row(
            "SELECT alertnames FROM incidents WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Migration 11 is released and never edited, so its four copies of the tally expression
    /// stay as written; what must agree with them is the statement a save runs.
    #[test]
    fn saving_an_incident_tallies_its_alerts_as_migration_11s_triggers_do() {
        let squeeze = |sql: &str| {
            sql.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace("( ", "(")
        };
        let triggers = squeeze(MIGRATIONS[10]);
        let save = squeeze(crate::store::sqlite::ALERT_TALLY_UPDATE);
        for incident in ["OLD.incident_id", "NEW.incident_id"] {
            let statement = save.replace("?1", incident);
            assert!(
                triggers.contains(&statement),
                "{statement}\nnot in\n{triggers}"
            );
        }
    }

    #[test]
    fn the_search_index_is_filled_from_existing_incidents_and_kept_by_every_write() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &MIGRATIONS[..9] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        conn.execute_batch(
            "INSERT INTO incidents (id, seq, key, title, status, impact_start_method, fired_at,
                 detected_at, reopen_count, received, duplicate, stale, version, updated_at)
             VALUES ('INC-2026-0001', 1, 'k1', 'Disk full on db-1', 'open', 'm', 0, 0, 0, 1, 0, 0, 1, 0),
                    ('INC-2026-0002', 2, 'k2', 'Other trouble', 'resolved', 'm', 0, 0, 0, 1, 0, 0, 1, 0);
             INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname, labels,
                 annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('a', 0, 'INC-2026-0001', 'firing', 'NodeDown', '{}', '{}', '', '', 0, 0),
                    ('b', 0, 'INC-2026-0001', 'firing', 'DiskFull', '{}', '{}', '', '', 0, 0),
                    ('c', 1, 'INC-2026-0001', 'firing', 'NodeDown', '{}', '{}', '', '', 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();

        // Backfilled: names sorted, each once; the index finds ids, titles, names, the phase.
        assert_eq!(alertnames(&conn, 1), "DiskFull\nNodeDown");
        assert_eq!(alertnames(&conn, 2), "");
        assert_eq!(matching(&conn, "\"nodedown\""), vec![1]);
        assert_eq!(matching(&conn, "\"inc-2026\""), vec![2, 1], "newest first");
        assert_eq!(
            matching(&conn, "\"TROUBLE\" AND status : \"resolved\""),
            vec![2]
        );
        assert_eq!(
            matching(&conn, "\"disk\" AND status : \"resolved\""),
            Vec::<i64>::new()
        );

        // Kept by the writes: a title, a status, an alert added, moved, deleted; a prune.
        conn.execute_batch(
            "UPDATE incidents SET title = 'Renamed', status = 'open' WHERE seq = 2;
             INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname, labels,
                 annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('d', 0, 'INC-2026-0002', 'firing', 'Added', '{}', '{}', '', '', 0, 0);",
        )
        .unwrap();
        assert_eq!(matching(&conn, "\"trouble\""), Vec::<i64>::new());
        assert_eq!(
            matching(&conn, "\"renamed\" AND status : \"open\""),
            vec![2]
        );
        assert_eq!(matching(&conn, "\"added\""), vec![2]);
        conn.execute_batch(
            "DELETE FROM occurrences WHERE fingerprint = 'b';
             UPDATE occurrences SET incident_id = 'INC-2026-0002' WHERE fingerprint = 'a';",
        )
        .unwrap();
        assert_eq!(alertnames(&conn, 1), "NodeDown");
        assert_eq!(alertnames(&conn, 2), "Added\nNodeDown");
        assert_eq!(matching(&conn, "\"diskfull\""), Vec::<i64>::new());
        assert_eq!(matching(&conn, "\"nodedown\""), vec![2, 1]);
        conn.execute_batch("DELETE FROM incidents WHERE seq = 2")
            .unwrap();
        assert_eq!(matching(&conn, "\"nodedown\""), vec![1]);
        assert_eq!(matching(&conn, "\"added\""), Vec::<i64>::new());
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM incident_search", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// Migration 14's expression is written out, one line per character (once, in
    /// `search_chars_sql!`, for the fill and the two triggers); what the short search
    /// asks of it is `sqlite::search_chars`. Each character in each column, in both
    /// cases, sets exactly the bit the search needs; a character outside the list none; a
    /// character after a NUL none (`LIKE` does not see it, so the search cannot need it).
    #[test]
    fn search_chars_records_the_characters_the_short_search_needs() {
        use crate::store::sqlite::{search_chars, SEARCH_CHARS};
        let conn = crate::store::open_in_memory().unwrap();
        let chars_of = |id: &str, title: &str, names: &str| -> i64 {
            conn.execute(
                "INSERT INTO incidents (id, seq, key, title, status, impact_start_method,
                     fired_at, detected_at, reopen_count, received, duplicate, stale, version,
                     updated_at, alertnames)
                 VALUES (?1, 1, 'k', ?2, 'open', 'm', 0, 0, 0, 1, 0, 0, 1, 0, ?3)",
                [id, title, names],
            )
            .unwrap();
            // Read from the index, where the walk reads it.
            let bits = conn
                .query_row(
                    "SELECT search_chars FROM incidents INDEXED BY incidents_unresolved_search
                     WHERE status <> 'resolved' AND seq = 1",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            conn.execute("DELETE FROM incidents", []).unwrap();
            bits
        };
        assert_eq!(SEARCH_CHARS.chars().count(), 62);
        for (i, c) in SEARCH_CHARS.chars().enumerate() {
            let bit = 1i64 << i;
            let (lower, upper) = (c.to_string(), c.to_ascii_uppercase().to_string());
            assert_eq!(search_chars(&lower), bit, "{c:?}");
            assert_eq!(search_chars(&upper), bit, "{c:?}");
            for text in [&lower, &upper] {
                assert_eq!(chars_of(text, "", ""), bit, "id {text:?}");
                assert_eq!(
                    chars_of("x", text, ""),
                    bit | search_chars("x"),
                    "title {text:?}"
                );
                assert_eq!(
                    chars_of("x", "", text),
                    bit | search_chars("x"),
                    "names {text:?}"
                );
            }
        }
        for other in ["É", "é", "\n", "\\", "$", "~", "\u{0}"] {
            assert_eq!(search_chars(other), 0, "{other:?}");
            assert_eq!(chars_of(other, other, other), 0, "{other:?}");
        }
        assert_eq!(search_chars("a\0b"), search_chars("a"));
        assert_eq!(chars_of("x", "a\0b", ""), search_chars("xa"));
        assert_eq!(search_chars("Zz"), search_chars("z"));
        // Of the id, its first two characters only (migration 15): a term of the walk matches
        // an id by its start.
        assert_eq!(
            chars_of("INC-2026-0001", "Disk full", "DiskFull\nNodeDown"),
            search_chars("indisk fullnodedown")
        );
        assert_eq!(chars_of("abc", "", ""), search_chars("ab"));
        assert_eq!(chars_of("Ü7x", "", ""), search_chars("7"));
    }

    /// Migration 15 computes every incident's characters and every block's anew, from the
    /// id's first two characters: a character only further in the ids (`c`, `-` of `INC-…`)
    /// was in every incident and block before, and is in none after.
    #[test]
    fn migration_15_computes_the_characters_anew_from_the_id_s_start() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &MIGRATIONS[..14] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 14).unwrap();
        for seq in 1..=200 {
            let status = if seq % 3 == 0 { "resolved" } else { "open" };
            conn.execute(
                "INSERT INTO incidents (id, seq, key, title, status, impact_start_method,
                     fired_at, detected_at, reopen_count, received, duplicate, stale, version,
                     updated_at)
                 VALUES ('INC-' || ?1, ?1, 'k', 'Title ' || ?1, ?2, 'm', 0, 0, 0, 1, 0, 0, 1, 0)",
                rusqlite::params![seq, status],
            )
            .unwrap();
        }
        use crate::store::sqlite::search_chars;
        let dash = search_chars("c-");
        let with = |conn: &Connection, table: &str, column: &str| -> i64 {
            conn.query_row(
                &format!("SELECT count(*) FROM {table} WHERE ({column} & ?1) <> 0"),
                [dash],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(with(&conn, "incidents", "search_chars"), 200, "before");
        assert_eq!(with(&conn, "incident_search_blocks", "chars"), 8, "before");
        migrate(&mut conn).unwrap();
        assert_eq!(with(&conn, "incidents", "search_chars"), 0, "after");
        assert_eq!(with(&conn, "incident_search_blocks", "chars"), 0, "after");
        let (first, blocks): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT search_chars FROM incidents WHERE seq = 1),
                        (SELECT count(*) FROM incident_search_blocks)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(first, search_chars("IN Title 1"));
        assert_eq!(blocks, 8, "4 blocks of 64 in each phase");
    }

    /// Every incident's characters are in its block of its phase (what makes the short
    /// search's skipping of blocks exact): after migration 14 fills the blocks from existing
    /// incidents, and after every kind of write that changes what they depend on.
    #[test]
    fn every_incident_s_characters_are_in_its_block_after_every_write() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &MIGRATIONS[..12] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 12).unwrap();
        let insert = |conn: &Connection, seq: i64, title: &str, status: &str| {
            conn.execute(
                "INSERT INTO incidents (id, seq, key, title, status, impact_start_method,
                     fired_at, detected_at, reopen_count, received, duplicate, stale, version,
                     updated_at)
                 VALUES ('INC-' || ?1, ?1, 'k', ?2, ?3, 'm', 0, 0, 0, 1, 0, 0, 1, 0)",
                rusqlite::params![seq, title, status],
            )
            .unwrap();
        };
        for seq in 1..=130 {
            let status = if seq % 3 == 0 { "resolved" } else { "open" };
            insert(&conn, seq, &format!("Title {seq}"), status);
        }
        migrate(&mut conn).unwrap();
        let missing = |conn: &Connection| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM incidents i WHERE NOT EXISTS (
                     SELECT 1 FROM incident_search_blocks b
                     WHERE b.resolved = (i.status = 'resolved') AND b.block = i.seq >> 6
                       AND (b.chars & i.search_chars) = i.search_chars)",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let blocks = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM incident_search_blocks", [], |r| {
                r.get(0)
            })
            .unwrap()
        };
        let chars = |conn: &Connection, seq: i64| -> i64 {
            conn.query_row(
                "SELECT search_chars FROM incidents WHERE seq = ?1",
                [seq],
                |r| r.get(0),
            )
            .unwrap()
        };
        use crate::store::sqlite::search_chars;
        assert_eq!(chars(&conn, 1), search_chars("IN Title 1"), "filled");
        assert_eq!(missing(&conn), 0, "filled from the existing incidents");
        assert_eq!(blocks(&conn), 6, "3 blocks of 64 in each phase");

        insert(&conn, 200, "Zebra quux", "open");
        assert_eq!(missing(&conn), 0, "an insert");
        conn.execute_batch(
            "UPDATE incidents SET title = 'Jinx wavy' WHERE seq = 5;
             UPDATE incidents SET status = 'resolved' WHERE seq = 7;
             UPDATE incidents SET status = 'acknowledged', title = 'Kept?' WHERE seq = 9;
             UPDATE incidents SET seq = 300 WHERE seq = 10;
             UPDATE incidents SET id = 'XYZ-1' WHERE seq = 11;",
        )
        .unwrap();
        assert_eq!(missing(&conn), 0, "a title, a phase, a seq, an id");
        // Set anew, not or'ed: a character the title lost is gone.
        assert_eq!(chars(&conn, 5), search_chars("IN Jinx wavy"), "a title");
        assert_eq!(
            chars(&conn, 200),
            search_chars("IN Zebra quux"),
            "an insert"
        );
        assert_eq!(chars(&conn, 11), search_chars("XY Title 11"), "an id");
        conn.execute_batch(
            "INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname,
                 labels, annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('a', 0, 'INC-12', 'firing', 'QuixoticJazz', '{}', '{}', '', '', 0, 0);",
        )
        .unwrap();
        let names: String = conn
            .query_row("SELECT alertnames FROM incidents WHERE seq = 12", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(names, "QuixoticJazz");
        assert_eq!(
            missing(&conn),
            0,
            "an alert's name, through migration 10's triggers"
        );
        assert_eq!(
            chars(&conn, 12),
            search_chars("IN Title 12 QuixoticJazz"),
            "an alert's name"
        );
    }

    /// Every pair of characters in a row of an incident's id's first two, title and alert
    /// names is in its block (what makes the two-character search's skipping exact): after
    /// migration 16 fills the pairs from existing incidents, and after every kind of write
    /// that changes what they depend on. Pairs computed here in Rust, as the search asks.
    #[test]
    fn every_incident_s_pairs_are_in_its_block_after_every_write() {
        use crate::store::sqlite::search_pair;
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &MIGRATIONS[..15] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 15).unwrap();
        let insert = |conn: &Connection, seq: i64, title: &str| {
            conn.execute(
                "INSERT INTO incidents (id, seq, key, title, status, impact_start_method,
                     fired_at, detected_at, reopen_count, received, duplicate, stale, version,
                     updated_at)
                 VALUES ('INC-' || ?1, ?1, 'k', ?2, 'open', 'm', 0, 0, 0, 1, 0, 0, 1, 0)",
                rusqlite::params![seq, title],
            )
            .unwrap();
        };
        for seq in 1..=130 {
            insert(&conn, seq, &format!("Title {seq}"));
        }
        insert(&conn, 131, "É\u{1F525} Ünïcode DB\nx");
        insert(&conn, 132, "A");
        migrate(&mut conn).unwrap();
        // (pair, block) of every incident that the table lacks.
        let missing = |conn: &Connection| -> Vec<(String, i64)> {
            let rows: Vec<(i64, String, String, String)> = conn
                .prepare("SELECT seq, id, title, alertnames FROM incidents")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut lacking = Vec::new();
            for (seq, id, title, names) in rows {
                let id: String = id.chars().take(2).collect();
                for text in [id, title, names] {
                    let chars: Vec<char> = text.chars().collect();
                    for w in chars.windows(2) {
                        let pair = search_pair(&w.iter().collect::<String>()).unwrap();
                        let there: bool = conn
                            .query_row(
                                "SELECT count(*) > 0 FROM incident_search_pairs
                                 WHERE pair = ?1 AND block = ?2",
                                rusqlite::params![pair, seq >> 6],
                                |r| r.get(0),
                            )
                            .unwrap();
                        if !there {
                            lacking.push((pair, seq >> 6));
                        }
                    }
                }
            }
            lacking
        };
        assert_eq!(missing(&conn), vec![], "filled from the existing incidents");
        let db: i64 = conn
            .query_row(
                "SELECT count(*) FROM incident_search_pairs WHERE pair = 'db' AND block = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(db, 1, "lower-cased");

        insert(&conn, 200, "Zebra quux");
        assert_eq!(missing(&conn), vec![], "an insert");
        conn.execute_batch(
            "UPDATE incidents SET title = 'Jinx wavy' WHERE seq = 5;
             UPDATE incidents SET seq = 300 WHERE seq = 10;
             UPDATE incidents SET id = 'XYZ-1' WHERE seq = 11;
             INSERT INTO occurrences (fingerprint, starts_at, incident_id, status, alertname,
                 labels, annotations, generator_url, group_key, first_seen_at, last_seen_at)
             VALUES ('a', 0, 'INC-12', 'firing', 'QuixoticJazz', '{}', '{}', '', '', 0, 0);",
        )
        .unwrap();
        assert_eq!(
            missing(&conn),
            vec![],
            "a title, a seq, an id, an alert's name"
        );

        // A block's pairs and characters go when its last incident does, not before.
        let rows_of = |conn: &Connection, block: i64| -> (i64, i64) {
            conn.query_row(
                "SELECT (SELECT count(*) FROM incident_search_pairs WHERE block = ?1),
                        (SELECT count(*) FROM incident_search_blocks WHERE block = ?1)",
                [block],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let (pairs, blocks) = rows_of(&conn, 1);
        assert!(pairs > 10 && blocks == 1, "{pairs} pairs, {blocks} blocks");
        conn.execute_batch("DELETE FROM incidents WHERE seq >= 64 AND seq < 127")
            .unwrap();
        assert_eq!(
            rows_of(&conn, 1),
            (pairs, blocks),
            "one incident left in block 1"
        );
        assert_eq!(missing(&conn), vec![]);
        conn.execute_batch("DELETE FROM incidents WHERE seq = 127")
            .unwrap();
        assert_eq!(rows_of(&conn, 1), (0, 0), "block 1 emptied");
        assert!(
            rows_of(&conn, 0).0 > 0 && rows_of(&conn, 2).0 > 0,
            "the others kept"
        );
        assert_eq!(missing(&conn), vec![]);
    }
}
