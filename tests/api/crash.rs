//! Crash campaign (issue 12): the real binary under a random mixed load (new incidents,
//! repeats, resolves, acknowledgements, notes, hand resolves) with every job kind active
//! (render; evidence against the recorded Prometheus; Slack against the fake), killed with
//! SIGKILL at random moments, round after round on the same storage. After every restart:
//! every webhook and API write answered 2xx is stored and `integrity_check` is ok; at the
//! end every job completes, every incident has its draft (showing its final status) and its
//! evidence, and Slack got every message, at most one extra copy per kill (docs/slack.md:
//! a message Slack accepted just before the kill is posted again).
//!
//! Rounds: `INCIDENTD_CRASH_ROUNDS` (default 3); seed: `INCIDENTD_CRASH_SEED` (printed; the
//! random choices replay, the timing of a kill relative to the daemon's work does not).
//! `scripts/crash-campaign.sh` runs 50 rounds in release mode.
//!
//! Also here: the exact state the bug of commit 1f060a2 left (a running and a pending
//! coalesced render of one incident) made directly in the database and by timing, and
//! SIGTERM under a large backlog (shutdown bounded, the backlog done after the restart).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::evidence::RecordedPrometheus;
use crate::fake::{FakeSlack, TOKEN};
use crate::helpers::*;

const API_TOKEN: &str = "crash-campaign-api-token-0123456789";

/// SplitMix64: small, seedable, good enough to pick operations and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
    )
}

/// Read-only: the daemon owns the database; we only look.
fn read_only(data: &Path) -> Connection {
    Connection::open_with_flags(
        data.join("incidentd.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap()
}

fn integrity_ok(conn: &Connection) {
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let fk: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0, "foreign_key_check found rows");
}

fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> i64 {
    conn.query_row(sql, p, |r| r.get(0)).unwrap()
}

fn strings(conn: &Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Jobs not finished: `(kind, state, incident)`. The standing evidence refresh of an open
/// incident (`prometheus.refresh_interval` from now, re-queued after every collection for as
/// long as the incident is open) is a schedule, not unfinished work, and is left out.
fn unfinished(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    conn.prepare(
        "SELECT j.kind, j.state, j.incident_id FROM jobs j \
         WHERE j.state IN ('pending', 'running') \
           AND NOT (j.kind = 'evidence' AND j.state = 'pending' \
                AND json_extract(j.payload, '$.phase') = 'refresh' \
                AND j.run_at > CAST(unixepoch('subsec') * 1000000 AS INTEGER) \
                AND EXISTS (SELECT 1 FROM incidents i \
                            WHERE i.id = j.incident_id AND i.status <> 'resolved'))",
    )
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Waits (bounded) until no job is pending or running.
async fn drained(conn: &Connection, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = unfinished(conn);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} jobs not done within {within:?}, e.g. {:?}",
            left.len(),
            &left[..left.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigkill(daemon: &mut Daemon) {
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
}

/// The recorded Prometheus, each answer delayed while `slow` is set.
#[derive(Clone)]
struct SlowPrometheus {
    recorded: RecordedPrometheus,
    slow: Arc<AtomicBool>,
    delay: Duration,
}

impl Respond for SlowPrometheus {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let answer = self.recorded.respond(req);
        if self.slow.load(Ordering::SeqCst) {
            answer.set_delay(self.delay)
        } else {
            answer
        }
    }
}

async fn prometheus(slow: Arc<AtomicBool>, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(SlowPrometheus {
            recorded: RecordedPrometheus::new(),
            slow,
            delay,
        })
        .mount(&server)
        .await;
    server
}

/// A configuration with evidence (short delays) and Slack in bot mode: each service in
/// `routed` has its channel `#<service>`, the others share `#incidents`; `extra` is more
/// YAML (top-level keys).
fn write_config(
    dir: &Path,
    prometheus: &str,
    slack: &FakeSlack,
    routed: &[String],
    extra: &str,
) -> PathBuf {
    let mut routes = String::new();
    if !routed.is_empty() {
        routes.push_str("  routes:\n");
        for s in routed {
            routes.push_str(&format!(
                "    - match: {{service: {s}}}\n      channel: \"#{s}\"\n"
            ));
        }
    }
    let config = dir.join("incidentd.yml");
    std::fs::write(
        &config,
        format!(
            "rules_dir: {rules}\n\
             {extra}\
             prometheus:\n  url: {prometheus}\n  timeout: 30s\n  quick_snapshot_delay: 100ms\n  snapshot_delay: 300ms\n  snapshot_margin: 300ms\n  retry_backoff: 1s\n\
             slack:\n  api_url: {slack}\n  channel: \"#incidents\"\n{routes}",
            rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").display(),
            slack = slack.api_url(),
        ),
    )
    .unwrap();
    config
}

const DAEMON_ENV: [(&str, &str); 2] = [
    ("INCIDENTD_SLACK_BOT_TOKEN", TOKEN),
    ("INCIDENTD_API_TOKEN", API_TOKEN),
];

/// A one-alert webhook: `ends_at` makes it a resolve.
fn alert(
    service: &str,
    slot: usize,
    fingerprint: &str,
    starts_at: &str,
    ends_at: Option<&str>,
    description: &str,
) -> String {
    let (alertname, severity) = [
        ("DatabaseConnectionPoolHigh", "critical"),
        ("HighRequestLatency", "warning"),
    ][slot % 2];
    let status = if ends_at.is_some() {
        "resolved"
    } else {
        "firing"
    };
    payload(|v| {
        v["status"] = status.into();
        v["groupKey"] = format!("{{}}:{{service=\"{service}\"}}").into();
        v["groupLabels"] = json!({"service": service});
        v["commonLabels"] = json!({"service": service});
        v["commonAnnotations"] = json!({});
        let a = &mut v["alerts"][0];
        a["status"] = status.into();
        a["fingerprint"] = fingerprint.into();
        a["labels"]["service"] = service.into();
        a["labels"]["job"] = service.into();
        a["labels"]["alertname"] = alertname.into();
        a["labels"]["severity"] = severity.into();
        a["startsAt"] = starts_at.into();
        a["endsAt"] = ends_at.unwrap_or("0001-01-01T00:00:00Z").into();
        a["annotations"]["description"] = description.into();
    })
}

fn rfc3339_millis(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A write answered 2xx, to be found after every restart.
#[derive(Debug, Clone)]
enum Answered {
    /// A firing webhook (new or repeat): the occurrence exists.
    Firing {
        fingerprint: String,
        starts_at: i64,
        incidents: Vec<String>,
    },
    /// A resolving webhook: the occurrence is resolved (nothing fires it again later).
    Resolved {
        fingerprint: String,
        starts_at: i64,
        incidents: Vec<String>,
    },
    Ack {
        by: String,
    },
    Note {
        by: String,
        text: String,
    },
    HandResolve {
        by: String,
    },
}

/// What one sender knows: its services' alerts that fire (fingerprint slot → startsAt) and
/// the incidents its webhooks were answered with. Kept across rounds.
#[derive(Default, Clone)]
struct Sender {
    firing: std::collections::BTreeMap<(usize, usize), (String, i64)>,
    /// The last startsAt (µs) used per slot: a new one is always later (an occurrence is
    /// fingerprint + startsAt, and a resolved one must not fire again).
    last_start: std::collections::BTreeMap<(usize, usize), i64>,
    incidents: Vec<String>,
    /// Services made up on the way (index `SERVICES_PER_SENDER` and up): new incidents,
    /// Slack to the shared `#incidents`.
    fresh: usize,
}

const SERVICES_PER_SENDER: usize = 3;
/// A bound on a sender's requests in one round (the kill normally ends the round first).
const MAX_OPS_PER_ROUND: usize = 5_000;
const SLOTS: usize = 2;

fn service(worker: usize, k: usize) -> String {
    format!("crash-w{worker}-s{k}")
}

fn fingerprint(worker: usize, k: usize, slot: usize) -> String {
    format!(
        "{:016x}",
        0xc0de_0000_0000 + (worker << 24) + (k << 4) + slot
    )
}

#[derive(Default)]
struct Tally {
    answered: Vec<Answered>,
    webhooks: usize,
    refused_4xx: usize,
    server_errors: Vec<String>,
}

/// One sender: random operations on its own services and incidents until the daemon is
/// gone (or `MAX_OPS_PER_ROUND`), a short random pause between them.
async fn send(
    client: reqwest::Client,
    url: String,
    worker: usize,
    tag: String,
    mut rng: Rng,
    mut me: Sender,
    tally: Arc<Mutex<Tally>>,
) -> Sender {
    for i in 0..MAX_OPS_PER_ROUND {
        tokio::time::sleep(rng.millis(10, 80)).await;
        let roll = rng.below(100);
        let k = match rng.below(20) {
            // Now and then an alert of a service never seen: a new incident.
            0 => {
                me.fresh += 1;
                SERVICES_PER_SENDER + me.fresh - 1
            }
            1 | 2 if me.fresh > 0 => SERVICES_PER_SENDER + rng.below(me.fresh as u64) as usize,
            _ => rng.below(SERVICES_PER_SENDER as u64) as usize,
        };
        let slot = rng.below(SLOTS as u64) as usize;
        let (svc, fp) = (service(worker, k), fingerprint(worker, k, slot));
        let person = format!("{tag}-w{worker}-{i}");
        let incident = (!me.incidents.is_empty())
            .then(|| me.incidents[rng.below(me.incidents.len() as u64) as usize].clone());
        enum Op {
            Webhook { resolve: bool },
            Api(&'static str, Value),
        }
        // Most of the load is webhooks, most of them repeats (Alertmanager's repeat_interval
        // and HA duplicates); what becomes a Slack message is rarer, as Slack takes about one
        // message per second per channel and the backlog must not grow without end.
        let op = match (roll, &incident) {
            (0..=89, _) | (_, None) => Op::Webhook {
                // A fifth of webhooks on a firing alert resolve it; the rest repeat it.
                resolve: me.firing.contains_key(&(k, slot)) && roll % 5 == 0,
            },
            (90..=92, Some(_)) => Op::Api("ack", json!({"by": person})),
            (93..=97, Some(_)) => Op::Api(
                "notes",
                json!({"by": person, "text": format!("note {person}")}),
            ),
            (_, Some(_)) => Op::Api("resolve", json!({"by": person})),
        };
        let (request, expect): (reqwest::RequestBuilder, Option<Answered>) = match op {
            Op::Webhook { resolve } => {
                let (starts, micros) = match me.firing.get(&(k, slot)) {
                    Some(s) => s.clone(),
                    None => {
                        let mut now = chrono::Utc::now();
                        if let Some(&last) = me.last_start.get(&(k, slot)) {
                            let after =
                                chrono::DateTime::from_timestamp_micros(last + 1000).unwrap();
                            now = now.max(after);
                        }
                        let s = (rfc3339_millis(now), now.timestamp_millis() * 1000);
                        me.last_start.insert((k, slot), s.1);
                        me.firing.insert((k, slot), s.clone());
                        s
                    }
                };
                let ends = resolve.then(|| rfc3339_millis(chrono::Utc::now()));
                let body = alert(
                    &svc,
                    slot,
                    &fp,
                    &starts,
                    ends.as_deref(),
                    &format!("sent by {person}"),
                );
                let answered = if resolve {
                    Answered::Resolved {
                        fingerprint: fp.clone(),
                        starts_at: micros,
                        incidents: Vec::new(),
                    }
                } else {
                    Answered::Firing {
                        fingerprint: fp.clone(),
                        starts_at: micros,
                        incidents: Vec::new(),
                    }
                };
                let r = client
                    .post(format!("{url}/webhook/alertmanager"))
                    .header("Content-Type", "application/json")
                    .body(body);
                (r, Some(answered))
            }
            Op::Api(action, body) => {
                let id = incident.clone().unwrap();
                let answered = match action {
                    "ack" => Answered::Ack { by: person.clone() },
                    "notes" => Answered::Note {
                        by: person.clone(),
                        text: format!("note {person}"),
                    },
                    _ => Answered::HandResolve { by: person.clone() },
                };
                let r = client
                    .post(format!("{url}/api/v1/incidents/{id}/{action}"))
                    .bearer_auth(API_TOKEN)
                    .json(&body);
                (r, Some(answered))
            }
        };
        let is_webhook = matches!(
            expect,
            Some(Answered::Firing { .. } | Answered::Resolved { .. })
        );
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => {
                // The daemon died with this request in flight: it may or may not have been
                // applied. A webhook's alert is left alone from now on (a new startsAt next).
                if is_webhook {
                    me.firing.remove(&(k, slot));
                }
                return me;
            }
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(b) => b,
            Err(_) if status.is_success() => {
                // Answered 2xx but the body was cut by the kill: not an answer we rely on.
                if is_webhook {
                    me.firing.remove(&(k, slot));
                }
                return me;
            }
            Err(_) => Value::Null,
        };
        let mut t = tally.lock().unwrap();
        if status.is_success() {
            let mut answered = expect.unwrap();
            match &mut answered {
                Answered::Firing { incidents, .. } | Answered::Resolved { incidents, .. } => {
                    t.webhooks += 1;
                    for id in body["incidents"].as_array().into_iter().flatten() {
                        let id = id.as_str().unwrap().to_string();
                        if !me.incidents.contains(&id) {
                            me.incidents.push(id.clone());
                        }
                        incidents.push(id);
                    }
                    if matches!(answered, Answered::Resolved { .. }) {
                        me.firing.remove(&(k, slot));
                    }
                }
                _ => {}
            }
            t.answered.push(answered);
        } else if status.is_client_error() && !is_webhook {
            // 409: already acknowledged / resolved. Nothing was changed.
            t.refused_4xx += 1;
        } else {
            t.server_errors
                .push(format!("{status} from worker {worker}: {body}"));
        }
        drop(t);
    }
    me
}

/// Every write answered 2xx is in the database; the database is sound.
fn check_answered(conn: &Connection, answered: &[Answered], webhooks: usize) {
    integrity_ok(conn);
    for a in answered {
        match a {
            Answered::Firing {
                fingerprint,
                starts_at,
                incidents,
            }
            | Answered::Resolved {
                fingerprint,
                starts_at,
                incidents,
            } => {
                let status: Option<String> = conn
                    .query_row(
                        "SELECT status FROM occurrences WHERE fingerprint = ?1 AND starts_at = ?2",
                        params![fingerprint, starts_at],
                        |r| r.get(0),
                    )
                    .ok();
                let Some(status) = status else {
                    panic!("answered 2xx but lost: {a:?}");
                };
                if matches!(a, Answered::Resolved { .. }) {
                    assert_eq!(status, "resolved", "answered 2xx but not resolved: {a:?}");
                }
                for id in incidents {
                    let n = count(conn, "SELECT count(*) FROM incidents WHERE id = ?1", [id]);
                    assert_eq!(n, 1, "incident {id} of {a:?} is gone");
                }
            }
            Answered::Ack { by } => {
                let n = count(
                    conn,
                    "SELECT count(*) FROM timeline WHERE kind = 'acknowledged' AND actor = ?1",
                    [by],
                );
                assert_eq!(n, 1, "acknowledgement answered 2xx but lost: {a:?}");
            }
            Answered::Note { by, text } => {
                let n = count(
                    conn,
                    "SELECT count(*) FROM timeline WHERE kind = 'note_added' AND actor = ?1 \
                     AND instr(text, ?2) > 0",
                    [by, text],
                );
                assert_eq!(n, 1, "note answered 2xx but lost: {a:?}");
            }
            Answered::HandResolve { by } => {
                let n = count(
                    conn,
                    "SELECT count(*) FROM timeline WHERE kind = 'resolved' AND actor = ?1",
                    [by],
                );
                assert_eq!(n, 1, "hand resolve answered 2xx but lost: {a:?}");
            }
        }
    }
    let stored = count(conn, "SELECT count(*) FROM notifications", []);
    assert!(
        stored >= webhooks as i64,
        "{webhooks} webhooks answered 2xx, {stored} notifications stored"
    );
}

/// Every incident's draft exists and shows its final status; none was taken for edited.
fn check_drafts(conn: &Connection, drafts: &Path) {
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT id, status FROM incidents")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (id, status) in rows {
        let path = drafts.join(format!("{id}.md"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no draft {}: {e}", path.display()));
        assert!(
            text.contains(&format!("**Status:** Draft (the incident is {status})")),
            "{} does not show the final status {status}",
            path.display()
        );
        assert!(
            !drafts.join(format!("{id}.generated.md")).exists(),
            "{id}: a crash made incidentd take its own draft for an edited one"
        );
    }
}

/// Slack got every message of every done job: roots (one per thread, plus extra copies)
/// and replies; extra copies at most one per kill. Returns the number of extra copies.
fn check_slack(conn: &Connection, slack: &FakeSlack, answered: &[Answered], kills: usize) -> usize {
    let accepted: Vec<_> = slack
        .accepted()
        .into_iter()
        .filter(|r| r.method == "chat.postMessage")
        .collect();
    let roots: Vec<_> = accepted
        .iter()
        .filter(|r| r.str("thread_ts").is_none())
        .collect();
    let replies: Vec<_> = accepted
        .iter()
        .filter(|r| r.str("thread_ts").is_some())
        .collect();
    let root_ts: HashSet<&str> = roots.iter().filter_map(|r| r.ts.as_deref()).collect();
    let threads = strings(conn, "SELECT ts FROM slack_threads");
    for ts in &threads {
        assert!(
            root_ts.contains(ts.as_str()),
            "thread {ts} was never posted"
        );
    }
    let incidents = count(conn, "SELECT count(*) FROM incidents", []);
    let without_thread = count(
        conn,
        "SELECT count(*) FROM incidents WHERE id NOT IN (SELECT incident_id FROM slack_threads)",
        [],
    );
    assert_eq!(without_thread, 0, "of {incidents} incidents");
    for r in &replies {
        let t = r.str("thread_ts").unwrap();
        assert!(root_ts.contains(t), "a reply in a thread never posted: {t}");
    }
    let expected_replies = count(
        conn,
        "SELECT count(*) FROM jobs WHERE kind = 'slack' AND state = 'done' \
         AND json_extract(payload, '$.event.kind') NOT IN ('opened', 'evidence_updated')",
        [],
    );
    let extra_roots = roots.len() as i64 - threads.len() as i64;
    let extra_replies = replies.len() as i64 - expected_replies;
    assert!(
        extra_roots >= 0 && extra_replies >= 0,
        "missing Slack messages: {} roots for {} threads, {} replies for {expected_replies} jobs",
        roots.len(),
        threads.len(),
        replies.len()
    );
    let extra = (extra_roots + extra_replies) as usize;
    assert!(
        extra <= kills,
        "{extra} extra Slack messages ({extra_roots} roots, {extra_replies} replies) after {kills} kills"
    );
    let texts: Vec<String> = replies.iter().map(|r| r.body.to_string()).collect();
    for a in answered {
        let needle = match a {
            Answered::Ack { by } => by,
            Answered::Note { text, .. } => text,
            _ => continue,
        };
        assert!(
            texts.iter().any(|t| t.contains(needle.as_str())),
            "no Slack reply for {a:?}"
        );
    }
    extra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_sigkill_at_random_moments_loses_no_answered_write_and_every_job_completes()
{
    let rounds = env_u64("INCIDENTD_CRASH_ROUNDS").unwrap_or(3) as usize;
    let seed = env_u64("INCIDENTD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let workers = env_u64("INCIDENTD_CRASH_SENDERS").unwrap_or(4) as usize;
    eprintln!(
        "crash campaign: {rounds} rounds, {workers} senders, seed {seed} \
         (replay: INCIDENTD_CRASH_SEED={seed} INCIDENTD_CRASH_ROUNDS={rounds})"
    );
    let started = Instant::now();
    let mut rng = Rng(seed);
    let slack = FakeSlack::start().await;
    let prom = prometheus(Arc::new(AtomicBool::new(false)), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let routed: Vec<String> = (0..workers)
        .flat_map(|w| (0..SERVICES_PER_SENDER).map(move |k| service(w, k)))
        .collect();
    // Reopening within 1 s, a new incident after: the load makes both.
    let config = write_config(
        dir.path(),
        &prom.uri(),
        &slack,
        &routed,
        "correlation:\n  reopen_window: 1s\n",
    );
    let client = reqwest::Client::new();
    let mut senders = vec![Sender::default(); workers];
    let mut answered: Vec<Answered> = Vec::new();
    let (mut webhooks, mut refused, mut killed_with_unfinished_jobs) = (0, 0, 0);
    let mut daemon = start_daemon_with(&data, Some(&config), &DAEMON_ENV).await;
    for round in 0..rounds {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let tasks: Vec<_> = senders
            .drain(..)
            .enumerate()
            .map(|(w, me)| {
                tokio::spawn(send(
                    client.clone(),
                    daemon.url.clone(),
                    w,
                    format!("s{seed}-r{round}"),
                    rng.fork(),
                    me,
                    tally.clone(),
                ))
            })
            .collect();
        // The kill: at a random moment while the senders are busy.
        tokio::time::sleep(rng.millis(200, 2_500)).await;
        sigkill(&mut daemon);
        for t in tasks {
            senders.push(
                tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("a sender stops once the daemon is gone")
                    .unwrap(),
            );
        }
        let tally = std::mem::take(&mut *tally.lock().unwrap());
        assert!(
            tally.server_errors.is_empty(),
            "round {round}: {:?}",
            tally.server_errors
        );
        let conn = read_only(&data);
        let left = count(
            &conn,
            "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')",
            [],
        );
        let by_kind: Vec<(String, i64)> = conn
            .prepare(
                "SELECT kind, count(*) FROM jobs WHERE state IN ('pending', 'running') \
                 GROUP BY kind ORDER BY kind",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        drop(conn);
        if left > 0 {
            killed_with_unfinished_jobs += 1;
        }
        answered.extend(tally.answered.iter().cloned());
        webhooks += tally.webhooks;
        refused += tally.refused_4xx;
        // The restart must succeed whatever the kill interrupted.
        daemon = start_daemon_with(&data, Some(&config), &DAEMON_ENV).await;
        let conn = read_only(&data);
        check_answered(&conn, &answered, webhooks);
        eprintln!(
            "round {round}: {} writes answered 2xx ({} webhooks), {} refused 4xx, \
             {left} jobs unfinished at the kill {by_kind:?}; restarted, all present, integrity ok",
            tally.answered.len(),
            tally.webhooks,
            tally.refused_4xx
        );
    }
    // The last daemon finishes everything.
    let conn = read_only(&data);
    let drain = Instant::now();
    drained(&conn, Duration::from_secs(120 + 20 * rounds as u64)).await;
    let drain = drain.elapsed();
    let failed: Vec<(String, String)> = conn
        .prepare("SELECT kind, coalesce(last_error, '') FROM jobs WHERE state = 'failed'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(failed.is_empty(), "jobs failed for good: {failed:?}");
    check_answered(&conn, &answered, webhooks);
    check_drafts(&conn, &dir.path().join("drafts"));
    let no_evidence = strings(
        &conn,
        "SELECT id FROM incidents WHERE id NOT IN (SELECT incident_id FROM evidence)",
    );
    assert!(no_evidence.is_empty(), "no evidence: {no_evidence:?}");
    let extra = check_slack(&conn, &slack, &answered, rounds);
    let incidents = count(&conn, "SELECT count(*) FROM incidents", []);
    let jobs: Vec<(String, i64)> = conn
        .prepare("SELECT kind, count(*) FROM jobs GROUP BY kind ORDER BY kind")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let superseded = count(
        &conn,
        "SELECT count(*) FROM jobs WHERE last_error LIKE '%superseded%'",
        [],
    );
    eprintln!(
        "crash campaign passed: seed {seed}, {rounds} rounds of SIGKILL ({killed_with_unfinished_jobs} \
         with jobs unfinished), {} writes answered 2xx ({webhooks} webhooks), {refused} refused 4xx, \
         {incidents} incidents, jobs {jobs:?} all done ({superseded} superseded after a kill), \
         {extra} extra Slack copies, in {:.0?} (the last {drain:.0?} the final drain)",
        answered.len(),
        started.elapsed()
    );
    drop(daemon);
}

/// The exact state of issue 12, made in the database while the daemon is stopped: one
/// coalesced render running (the process died during it) and one pending behind it, for one
/// incident, with the draft on disk one webhook behind. Start-up used to fail on
/// `jobs_coalesced`; now the daemon starts, and both jobs end with the draft up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_state_a_running_and_a_pending_render_of_one_incident_starts_and_finishes_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let drafts = dir.path().join("drafts");
    let client = reqwest::Client::new();
    let mut daemon = start_daemon(&data).await;
    let starts = rfc3339_millis(chrono::Utc::now());
    let post = |description: &str| {
        let body = alert(
            "crash-state",
            0,
            "00000000c0de5747",
            &starts,
            None,
            description,
        );
        client
            .post(format!("{}/webhook/alertmanager", daemon.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let r = post("first version of the alert").await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["incidents"][0]
        .as_str()
        .unwrap()
        .to_string();
    let conn = read_only(&data);
    drained(&conn, Duration::from_secs(20)).await;
    let draft = drafts.join(format!("{id}.md"));
    let sidecar = drafts.join(format!(".{id}.md.sha256"));
    let old = (
        std::fs::read(&draft).unwrap(),
        std::fs::read(&sidecar).unwrap(),
    );
    assert!(String::from_utf8_lossy(&old.0).contains("first version of the alert"));
    let r = post("second version, the last webhook").await.unwrap();
    assert_eq!(r.status(), 200);
    drained(&conn, Duration::from_secs(20)).await;
    drop(conn);
    sigkill(&mut daemon);

    // What the crash leaves: the draft as of the first webhook (the render for the second
    // was running), and the two jobs.
    std::fs::write(&draft, &old.0).unwrap();
    std::fs::write(&sidecar, &old.1).unwrap();
    let conn = Connection::open(data.join("incidentd.db")).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    for (state, attempts) in [("running", 1), ("pending", 0)] {
        conn.execute(
            "INSERT INTO jobs (kind, incident_id, payload, coalesce, state, run_at, attempts, created_at) \
             SELECT kind, incident_id, payload, 1, ?1, ?2, ?3, ?2 FROM jobs \
             WHERE kind = 'render' AND incident_id = ?4 ORDER BY id DESC LIMIT 1",
            params![state, now, attempts, id],
        )
        .unwrap();
    }
    let crashed: Vec<(i64, String)> = conn
        .prepare("SELECT id, state FROM jobs WHERE state IN ('running', 'pending') ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        crashed.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["running", "pending"]
    );
    drop(conn);

    let daemon = start_daemon(&data).await;
    let conn = read_only(&data);
    drained(&conn, Duration::from_secs(20)).await;
    for (job, _) in &crashed {
        let state: String = conn
            .query_row("SELECT state FROM jobs WHERE id = ?1", [job], |r| r.get(0))
            .unwrap();
        assert_eq!(state, "done", "job {job}");
    }
    let text = std::fs::read_to_string(&draft).unwrap();
    assert!(
        text.contains("second version, the last webhook")
            && !text.contains("first version of the alert"),
        "the draft is not up to date:\n{text}"
    );
    assert!(!drafts.join(format!("{id}.generated.md")).exists());
    integrity_ok(&conn);
    drop(daemon);
}

/// The same state reached for real: one alert of one incident firing and resolving back to
/// back (each a change: resolved, reopened), so a render is running while the next is
/// queued; the daemon is killed as soon as the database shows both. Timing-based, so a few
/// tries; each try's state at the kill is read from the file before any restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_back_to_back_renders_of_one_incident_restarts_and_finishes_both() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let drafts = dir.path().join("drafts");
    let client = reqwest::Client::new();
    let mut reproduced = None;
    for attempt in 0..10u64 {
        let mut daemon = start_daemon(&data).await;
        let sender = {
            let (client, url) = (client.clone(), daemon.url.clone());
            tokio::spawn(async move {
                let mut starts = String::new();
                for i in 0..5_000u64 {
                    // A new startsAt for every firing: a new occurrence reopening the incident.
                    let n = attempt * 10_000 + i / 2;
                    if i % 2 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        starts = rfc3339_millis(chrono::Utc::now());
                    }
                    let ends = (i % 2 == 1).then(|| rfc3339_millis(chrono::Utc::now()));
                    let body = alert(
                        "crash-burst",
                        0,
                        "00000000c0deb057",
                        &starts,
                        ends.as_deref(),
                        &format!("burst {n}"),
                    );
                    let r = client
                        .post(format!("{url}/webhook/alertmanager"))
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {}
                        Ok(r) => panic!("unexpected {}", r.status()),
                        Err(_) => return,
                    }
                }
            })
        };
        let both = "SELECT count(*) FROM jobs r JOIN jobs p ON p.incident_id = r.incident_id \
                    AND p.kind = r.kind WHERE r.kind = 'render' AND r.state = 'running' \
                    AND p.state = 'pending'";
        let conn = read_only(&data);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if conn
                .query_row(both, [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        sigkill(&mut daemon);
        sender.await.unwrap();
        drop(conn);
        // What the kill left (read before any start recovers it).
        let conn = read_only(&data);
        let at_kill = count(&conn, both, []);
        drop(conn);
        eprintln!("attempt {attempt}: running + pending renders at the kill: {at_kill}");
        if at_kill > 0 {
            reproduced = Some(attempt);
            break;
        }
    }
    let Some(attempt) = reproduced else {
        panic!("in 10 tries the kill never caught a render running with another pending");
    };
    let daemon = start_daemon(&data).await;
    let conn = read_only(&data);
    drained(&conn, Duration::from_secs(20)).await;
    let failed = count(
        &conn,
        "SELECT count(*) FROM jobs WHERE state = 'failed'",
        [],
    );
    assert_eq!(failed, 0);
    // The draft shows the incident as the last stored webhook left it.
    let (id, status, reopened): (String, String, i64) = conn
        .query_row(
            "SELECT id, status, reopen_count FROM incidents WHERE service = 'crash-burst' \
             ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(reopened > 0);
    let text = std::fs::read_to_string(drafts.join(format!("{id}.md"))).unwrap();
    assert!(
        text.contains(&format!("**Status:** Draft (the incident is {status})"))
            && text.contains(&format!("| Times reopened (flapping) | {reopened} |")),
        "attempt {attempt}: the draft is not up to date ({status}, reopened {reopened}):\n{text}"
    );
    integrity_ok(&conn);
    drop(daemon);
}

/// SIGTERM with a large backlog (evidence queries slow, Slack paced to one message per
/// second on a channel) and webhooks still arriving: the process exits 0 within a bound
/// instead of draining the backlog; after the restart the backlog is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_sigterm_under_a_large_backlog_stops_within_bounds_and_the_rest_runs_after_restart() {
    let slack = FakeSlack::start().await;
    let slow = Arc::new(AtomicBool::new(true));
    // Each Prometheus answer takes 10 s: an evidence job (several queries) takes far longer
    // than the grace, and a shutdown that waited for it would take 10 s or more.
    let prom = prometheus(slow.clone(), Duration::from_secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let n = 40;
    // The backlog's incidents each on a channel of their own; those arriving during the
    // stop share `#incidents`, one message a second.
    let routed: Vec<String> = (0..n).map(|i| format!("backlog-{i}")).collect();
    let config = write_config(dir.path(), &prom.uri(), &slack, &routed, "");
    let client = reqwest::Client::new();
    let mut daemon = start_daemon_with(&data, Some(&config), &DAEMON_ENV).await;
    let starts = rfc3339_millis(chrono::Utc::now());
    for i in 0..n {
        let svc = format!("backlog-{i}");
        let r = client
            .post(format!("{}/webhook/alertmanager", daemon.url))
            .header("Content-Type", "application/json")
            .body(alert(
                &svc,
                i % 2,
                &format!("{:016x}", 0xba_c000 + i),
                &starts,
                None,
                "x",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Wait until an evidence job is stuck in a slow query: the case shutdown used to wait on.
    let conn = read_only(&data);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        &conn,
        "SELECT count(*) FROM jobs WHERE kind = 'evidence' AND state = 'running'",
        [],
    ) == 0
    {
        assert!(Instant::now() < deadline, "no evidence job ever ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Webhooks keep arriving while the signal lands.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (client, url, answered, starts) = (
            client.clone(),
            daemon.url.clone(),
            answered.clone(),
            starts.clone(),
        );
        tokio::spawn(async move {
            for i in 0..2_000u64 {
                let svc = format!("late-{i}");
                let body = alert(
                    &svc,
                    0,
                    &format!("{:016x}", 0x1a7e_0000 + i),
                    &starts,
                    None,
                    "x",
                );
                let r = client
                    .post(format!("{url}/webhook/alertmanager"))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => answered.lock().unwrap().push(svc),
                    _ => return,
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backlog = count(
        &conn,
        "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')",
        [],
    );
    assert!(backlog >= 40, "only {backlog} jobs queued: not a backlog");
    let term = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < Duration::from_secs(20),
            "still running {:?} after SIGTERM",
            term.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = term.elapsed();
    sender.await.unwrap();
    assert!(exit.success(), "exit status {exit}");
    // 5 s of grace for jobs in flight (jobs::SHUTDOWN_GRACE), plus closing; the backlog is
    // not drained.
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    let left = count(
        &conn,
        "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')",
        [],
    );
    assert!(left > 0, "the whole backlog ran before exiting?");
    integrity_ok(&conn);
    drop(conn);
    let answered = answered.lock().unwrap().clone();
    eprintln!(
        "SIGTERM with {backlog} jobs queued: exited 0 in {took:.1?}, {left} jobs left for the \
         restart; {} webhooks answered while stopping",
        answered.len()
    );

    slow.store(false, Ordering::SeqCst);
    let daemon = start_daemon_with(&data, Some(&config), &DAEMON_ENV).await;
    let conn = read_only(&data);
    drained(&conn, Duration::from_secs(120)).await;
    let failed = count(
        &conn,
        "SELECT count(*) FROM jobs WHERE state = 'failed'",
        [],
    );
    assert_eq!(failed, 0, "jobs failed");
    let services: HashSet<String> = strings(&conn, "SELECT service FROM incidents")
        .into_iter()
        .collect();
    for s in (0..n).map(|i| format!("backlog-{i}")).chain(answered) {
        assert!(services.contains(&s), "{s} answered 200 but lost");
    }
    let no_evidence = strings(
        &conn,
        "SELECT id FROM incidents WHERE id NOT IN (SELECT incident_id FROM evidence)",
    );
    assert!(no_evidence.is_empty(), "no evidence: {no_evidence:?}");
    check_drafts(&conn, &dir.path().join("drafts"));
    check_slack(&conn, &slack, &[], 0);
    integrity_ok(&conn);
    drop(daemon);
}
