//! PostgreSQL's Slack conversation statements: the ports of `store/sqlite/slack.rs`.

use postgres::Row;

use super::{PgReads, PgTx, Result};
use crate::incident::conversation::ThreadMessage;
use crate::incident::{MilestoneKind, Status, TimelineEvent, Timestamp};
use crate::store::slack::{ChannelIncident, SlackReads, SlackTx};
use crate::time::{from_micros, to_micros};

const MESSAGE_COLUMNS: &str = "incident_id, channel, ts, at, user_id, author, text, captured, \
     milestone, edited_at, deleted_at";

fn message_from_row(r: &Row) -> Result<ThreadMessage> {
    let milestone: Option<String> = r.try_get(8)?;
    Ok(ThreadMessage {
        incident_id: r.try_get(0)?,
        channel: r.try_get(1)?,
        ts: r.try_get(2)?,
        at: from_micros(r.try_get(3)?),
        user_id: r.try_get(4)?,
        author: r.try_get(5)?,
        text: r.try_get(6)?,
        captured: r.try_get::<_, i64>(7)? != 0,
        milestone: milestone.as_deref().and_then(MilestoneKind::parse),
        edited_at: r.try_get::<_, Option<i64>>(9)?.map(from_micros),
        deleted_at: r.try_get::<_, Option<i64>>(10)?.map(from_micros),
    })
}

impl SlackTx for PgTx<'_, '_> {
    fn record_slack_event(&mut self, event_id: &str, now: Timestamp) -> Result<bool> {
        Ok(self.c.execute(
            "INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &to_micros(now)],
        )? == 1)
    }

    fn thread_incident(&mut self, channel: &str, ts: &str) -> Result<Option<String>> {
        self.c
            .query_opt(
                "SELECT incident_id FROM slack_threads WHERE channel = $1 AND ts = $2",
                &[&channel, &ts],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
    }

    fn thread_message(&mut self, channel: &str, ts: &str) -> Result<Option<ThreadMessage>> {
        self.c
            .query_opt(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM slack_messages WHERE channel = $1 AND ts = $2"
                ),
                &[&channel, &ts],
            )?
            .map(|r| message_from_row(&r))
            .transpose()
    }

    fn put_thread_message(&mut self, m: &ThreadMessage) -> Result<()> {
        self.c.execute(
            &format!(
                "INSERT INTO slack_messages ({MESSAGE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (channel, ts) DO UPDATE SET author = EXCLUDED.author, \
                   text = EXCLUDED.text, captured = EXCLUDED.captured, \
                   milestone = EXCLUDED.milestone, edited_at = EXCLUDED.edited_at, \
                   deleted_at = EXCLUDED.deleted_at"
            ),
            &[
                &m.incident_id,
                &m.channel,
                &m.ts,
                &to_micros(m.at),
                &m.user_id,
                &m.author,
                &m.text,
                &(m.captured as i64),
                &m.milestone.map(MilestoneKind::as_str),
                &m.edited_at.map(to_micros),
                &m.deleted_at.map(to_micros),
            ],
        )?;
        Ok(())
    }

    fn append_timeline(&mut self, incident_id: &str, rows: &[TimelineEvent]) -> Result<()> {
        for e in rows {
            self.c.execute(
                "INSERT INTO timeline (incident_id, at, kind, actor, text, human) \
                 VALUES ($1, $2, $3, $4, $5, false)",
                &[
                    &incident_id,
                    &to_micros(e.at),
                    &e.kind.as_str(),
                    &e.actor,
                    &e.text,
                ],
            )?;
        }
        let now = to_micros(self.now);
        self.c.execute(
            "UPDATE incidents SET version = version + 1, updated_at = $2 WHERE id = $1",
            &[&incident_id, &now],
        )?;
        Ok(())
    }

    fn put_slack_user(&mut self, user_id: &str, name: &str, now: Timestamp) -> Result<()> {
        self.c.execute(
            "INSERT INTO slack_users (user_id, name, fetched_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name, \
               fetched_at = EXCLUDED.fetched_at",
            &[&user_id, &name, &to_micros(now)],
        )?;
        Ok(())
    }

    fn prune_slack_events(&mut self, cutoff: Timestamp) -> Result<usize> {
        Ok(self.c.execute(
            "DELETE FROM slack_events WHERE received_at < $1",
            &[&to_micros(cutoff)],
        )? as usize)
    }
}

impl SlackReads for PgReads<'_, '_> {
    fn slack_user(&mut self, user_id: &str) -> Result<Option<(String, Timestamp)>> {
        self.0
            .query_opt(
                "SELECT name, fetched_at FROM slack_users WHERE user_id = $1",
                &[&user_id],
            )?
            .map(|r| Ok((r.try_get(0)?, from_micros(r.try_get(1)?))))
            .transpose()
    }

    fn thread_messages(&mut self, incident_id: &str) -> Result<Vec<ThreadMessage>> {
        self.0
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM slack_messages \
                     WHERE incident_id = $1 AND captured = 1 ORDER BY at, ts"
                ),
                &[&incident_id],
            )?
            .iter()
            .map(message_from_row)
            .collect()
    }

    fn channel_incidents(&mut self, channel: &str) -> Result<Vec<ChannelIncident>> {
        self.0
            .query(
                "SELECT i.id, i.title, i.status FROM slack_threads t JOIN incidents i \
                 ON i.id = t.incident_id WHERE t.channel = $1 AND i.status <> 'resolved' \
                 ORDER BY i.seq DESC LIMIT 20",
                &[&channel],
            )?
            .iter()
            .map(|r| {
                let status: String = r.try_get(2)?;
                Ok(ChannelIncident {
                    id: r.try_get(0)?,
                    title: r.try_get(1)?,
                    status: Status::parse(&status).unwrap_or(Status::Open),
                })
            })
            .collect()
    }
}
