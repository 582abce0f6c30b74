//! The floor incidentd's benchmark is compared with: the least a durable webhook receiver on
//! this stack has to do. Each `POST /webhook/alertmanager` body is parsed as JSON (400 if it
//! is not) and handed to one writer thread that drains everything queued into one SQLite
//! transaction (WAL, `synchronous=FULL`), commits, and only then lets the handlers answer 200.
//! No correlation, no validation beyond JSON: whatever incidentd costs above this is its own.
//!
//! Usage: `incidentd-bench-baseline --listen 127.0.0.1:9198 --db /tmp/baseline.db`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot};

/// Bodies waiting for the writer, with the channel to answer their handler on.
type Job = (Bytes, oneshot::Sender<Result<(), String>>);

/// How many queued bodies one transaction takes at most, so one commit never grows unbounded.
const MAX_BATCH: usize = 4096;

struct Args {
    listen: SocketAddr,
    db: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut db = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v}: {e}"))?);
            }
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        db: db.ok_or("--db PATH is required")?,
    })
}

fn open(path: &PathBuf) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS notifications (
             id INTEGER PRIMARY KEY,
             received_at_ms INTEGER NOT NULL,
             body BLOB NOT NULL
         )",
    )?;
    Ok(conn)
}

/// The single writer: waits for one job, takes whatever else is queued, commits them
/// together, answers all of them.
fn writer(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &batch).map_err(|e| e.to_string());
        for (_, answer) in batch.drain(..) {
            // The handler may have gone (client disconnected); nothing to tell then.
            let _ = answer.send(result.clone());
        }
    }
}

fn commit(conn: &mut rusqlite::Connection, batch: &[Job]) -> rusqlite::Result<()> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO notifications (received_at_ms, body) VALUES (?1, ?2)")?;
        for (body, _) in batch {
            insert.execute(rusqlite::params![now_ms, body.as_ref()])?;
        }
    }
    tx.commit()
}

async fn webhook(State(tx): State<mpsc::Sender<Job>>, body: Bytes) -> (StatusCode, &'static str) {
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, "{\"error\":\"invalid JSON\"}");
    }
    let (answer, done) = oneshot::channel();
    if tx.send((body, answer)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"writer gone\"}");
    }
    match done.await {
        Ok(Ok(())) => (StatusCode::OK, "{\"status\":\"ok\"}"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"storage\"}"),
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("incidentd-bench-baseline: {e}");
            eprintln!("usage: incidentd-bench-baseline --listen ADDR --db PATH");
            std::process::exit(2);
        }
    };
    let conn = match open(&args.db) {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("incidentd-bench-baseline: {}: {e}", args.db.display());
            std::process::exit(1);
        }
    };
    let (tx, rx) = mpsc::channel::<Job>(MAX_BATCH * 4);
    std::thread::spawn(move || writer(conn, rx));

    let app = Router::new()
        .route("/webhook/alertmanager", post(webhook))
        .route("/-/ready", get(|| async { "ready" }))
        .route("/-/healthy", get(|| async { "healthy" }))
        .with_state(tx);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("incidentd-bench-baseline: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    eprintln!("incidentd-bench-baseline listening on {}", args.listen);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("incidentd-bench-baseline: {e}");
        std::process::exit(1);
    }
}
