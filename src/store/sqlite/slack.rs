//! SQLite's Slack conversation statements ([`SlackTx`], [`SlackReads`]).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{SqliteReads, SqliteRepo};
use crate::incident::conversation::ThreadMessage;
use crate::incident::{MilestoneKind, Status, TimelineEvent, Timestamp};
use crate::store::slack::{ChannelIncident, SlackReads, SlackTx};
use crate::store::StoreError;
use crate::time::{from_micros, to_micros};

const MESSAGE_COLUMNS: &str = "incident_id, channel, ts, at, user_id, author, text, captured, \
     milestone, edited_at, deleted_at";

fn message_from_row(r: &Row) -> rusqlite::Result<ThreadMessage> {
    let milestone: Option<String> = r.get(8)?;
    Ok(ThreadMessage {
        incident_id: r.get(0)?,
        channel: r.get(1)?,
        ts: r.get(2)?,
        at: from_micros(r.get(3)?),
        user_id: r.get(4)?,
        author: r.get(5)?,
        text: r.get(6)?,
        captured: r.get::<_, i64>(7)? != 0,
        milestone: milestone.as_deref().and_then(MilestoneKind::parse),
        edited_at: r.get::<_, Option<i64>>(9)?.map(from_micros),
        deleted_at: r.get::<_, Option<i64>>(10)?.map(from_micros),
    })
}

fn thread_message(
    conn: &Connection,
    channel: &str,
    ts: &str,
) -> rusqlite::Result<Option<ThreadMessage>> {
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM slack_messages WHERE channel = ?1 AND ts = ?2"
    ))?
    .query_row(params![channel, ts], message_from_row)
    .optional()
}

impl SlackTx for SqliteRepo<'_> {
    fn record_slack_event(&mut self, event_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO slack_events (event_id, received_at) VALUES (?1, ?2) \
                 ON CONFLICT (event_id) DO NOTHING",
            )?
            .execute(params![event_id, to_micros(now)])?
            == 1)
    }

    fn thread_incident(&mut self, channel: &str, ts: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT incident_id FROM slack_threads WHERE channel = ?1 AND ts = ?2")?
            .query_row(params![channel, ts], |r| r.get(0))
            .optional()?)
    }

    fn thread_message(
        &mut self,
        channel: &str,
        ts: &str,
    ) -> Result<Option<ThreadMessage>, StoreError> {
        Ok(thread_message(self.tx, channel, ts)?)
    }

    fn put_thread_message(&mut self, m: &ThreadMessage) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO slack_messages ({MESSAGE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (channel, ts) DO UPDATE SET author = excluded.author, \
                   text = excluded.text, captured = excluded.captured, \
                   milestone = excluded.milestone, edited_at = excluded.edited_at, \
                   deleted_at = excluded.deleted_at"
            ))?
            .execute(params![
                m.incident_id,
                m.channel,
                m.ts,
                to_micros(m.at),
                m.user_id,
                m.author,
                m.text,
                m.captured as i64,
                m.milestone.map(MilestoneKind::as_str),
                m.edited_at.map(to_micros),
                m.deleted_at.map(to_micros),
            ])?;
        Ok(())
    }

    fn append_timeline(
        &mut self,
        incident_id: &str,
        rows: &[TimelineEvent],
    ) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO timeline (incident_id, at, kind, actor, text, human) \
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        )?;
        for e in rows {
            insert.execute(params![
                incident_id,
                to_micros(e.at),
                e.kind.as_str(),
                e.actor,
                e.text
            ])?;
        }
        self.tx
            .prepare_cached(
                "UPDATE incidents SET version = version + 1, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![incident_id, to_micros(self.now)])?;
        Ok(())
    }

    fn put_slack_user(
        &mut self,
        user_id: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO slack_users (user_id, name, fetched_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, \
                   fetched_at = excluded.fetched_at",
            )?
            .execute(params![user_id, name, to_micros(now)])?;
        Ok(())
    }

    fn prune_slack_events(&mut self, cutoff: Timestamp) -> Result<usize, StoreError> {
        Ok(self
            .tx
            .prepare_cached("DELETE FROM slack_events WHERE received_at < ?1")?
            .execute(params![to_micros(cutoff)])?)
    }
}

impl SlackReads for SqliteReads<'_> {
    fn slack_user(&mut self, user_id: &str) -> Result<Option<(String, Timestamp)>, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT name, fetched_at FROM slack_users WHERE user_id = ?1")?
            .query_row(params![user_id], |r| {
                Ok((r.get(0)?, from_micros(r.get(1)?)))
            })
            .optional()?)
    }

    fn thread_messages(&mut self, incident_id: &str) -> Result<Vec<ThreadMessage>, StoreError> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM slack_messages \
             WHERE incident_id = ?1 AND captured = 1 ORDER BY at, ts"
        ))?;
        let rows = stmt.query_map(params![incident_id], message_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn channel_incidents(&mut self, channel: &str) -> Result<Vec<ChannelIncident>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT i.id, i.title, i.status FROM slack_threads t JOIN incidents i \
             ON i.id = t.incident_id WHERE t.channel = ?1 AND i.status <> 'resolved' \
             ORDER BY i.seq DESC LIMIT 20",
        )?;
        let rows = stmt.query_map(params![channel], |r| {
            let status: String = r.get(2)?;
            Ok(ChannelIncident {
                id: r.get(0)?,
                title: r.get(1)?,
                status: Status::parse(&status).unwrap_or(Status::Open),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
