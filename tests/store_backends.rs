//! One store test suite for both backends: the same scenarios through the public `Store` API
//! against SQLite and PostgreSQL must give identical results (incidents, timelines, ids, jobs,
//! leases, drafts, pruning). Then what only PostgreSQL has: two replicas (two `Store`s on one
//! database) ingesting and claiming concurrently, and the server going away and coming back.
//!
//! The PostgreSQL tests skip loudly without the binaries, and fail under
//! `INCIDENTD_REQUIRE_E2E=1`.

#[path = "support/postgres.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use incidentd::config::PostgresConfig;
use incidentd::followup::{Change, JobSpec, Planner};
use incidentd::incident::{Action, ImpactMethod, Rules, Status};
use incidentd::store::postgres::Dsn;
use incidentd::store::{IncidentFilter, ListFilter, NewEvidence, Store, StoredDraft};
use serde_json::{json, Value};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn pg_config(url: &str) -> PostgresConfig {
    PostgresConfig::new(Dsn::parse(url).expect("test URL parses"))
}

/// Open on a blocking thread: connecting runs the sync driver's own runtime.
async fn open_pg(url: &str) -> Store {
    let config = pg_config(url);
    tokio::task::spawn_blocking(move || Store::open_postgres(&config))
        .await
        .unwrap()
        .expect("opens PostgreSQL")
        .with_followups(Arc::new(Rules::default()), planner())
}

/// Every change queues a coalesced render and a Slack message.
fn planner() -> Arc<Planner> {
    Arc::new(|change: &Change| {
        vec![
            JobSpec {
                kind: "render",
                payload: json!({}),
                coalesce: true,
                delay: Duration::zero(),
            },
            JobSpec {
                kind: "slack",
                payload: json!({ "for": change.incident_id() }),
                coalesce: false,
                delay: Duration::zero(),
            },
        ]
    })
}

fn spec(kind: &'static str, payload: Value, coalesce: bool) -> JobSpec {
    JobSpec {
        kind,
        payload,
        coalesce,
        delay: Duration::zero(),
    }
}

/// The recorded webhooks of scenario-single with their arrival times, in arrival order.
fn recorded_webhooks() -> Vec<(String, DateTime<Utc>, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-single");
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("webhooks/index.json")).unwrap()).unwrap();
    index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            let at = t(e["received_at"].as_str().unwrap());
            (file.clone(), at, std::fs::read(dir.join(&file)).unwrap())
        })
        .collect()
}

/// Webhook 01 for another occurrence: another fingerprint, startsAt, and service.
fn variant(fingerprint: &str, starts_at: &str, service: &str) -> Vec<u8> {
    let body = String::from_utf8(recorded_webhooks()[0].2.clone()).unwrap();
    body.replace("f359ea1a0f5279b1", fingerprint)
        .replace("2026-11-23T02:26:28.738Z", starts_at)
        .replace("payment-service", service)
        .into_bytes()
}

async fn ingest(store: &Store, body: &[u8], at: DateTime<Utc>) -> Result<String, String> {
    let n = incidentd::alertmanager::decode(body).expect("decodes");
    store
        .ingest(n, bytes::Bytes::copy_from_slice(body), at)
        .await
        .map(|o| format!("{o:?}"))
        .map_err(|e| format!("{e} (transient: {})", e.is_transient()))
}

/// The scenarios, as a transcript of what every call returned.
async fn scenarios(store: Store) -> Vec<String> {
    let mut log = Vec::new();
    macro_rules! note {
        ($($arg:tt)*) => { log.push(format!($($arg)*)) };
    }

    // Ingestion: the recorded incident, a repeat, two later occurrences of other services.
    for (file, at, body) in recorded_webhooks() {
        note!("ingest {file}: {:?}", ingest(&store, &body, at).await);
    }
    let (_, at, body) = &recorded_webhooks()[0];
    note!(
        "repeat: {:?}",
        ingest(&store, body, *at + Duration::seconds(30)).await
    );
    let open = variant("aaaa000000000001", "2026-11-23T05:00:00Z", "shop");
    note!(
        "shop: {:?}",
        ingest(&store, &open, t("2026-11-23T05:00:05Z")).await
    );
    let other = variant("bbbb000000000002", "2026-11-23T06:00:00Z", "cart");
    note!(
        "cart: {:?}",
        ingest(&store, &other, t("2026-11-23T06:00:05Z")).await
    );

    // The incidents page: unresolved first, paged one at a time; filters and search.
    let mut after = None;
    let mut walked = Vec::new();
    for _ in 0..10 {
        let page = store
            .find_incidents(IncidentFilter::default(), after, 1)
            .await
            .unwrap();
        walked.extend(
            page.incidents
                .iter()
                .map(|i| format!("{} {}", i.id, i.status.as_str())),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    note!("pages: {walked:?}");
    assert_eq!(walked.len(), 3, "{walked:?}");
    assert!(walked[2].ends_with("resolved"), "resolved last: {walked:?}");
    let filter = |edit: fn(&mut IncidentFilter)| {
        let mut filter = IncidentFilter::default();
        edit(&mut filter);
        filter
    };
    let cases: [(&str, IncidentFilter, &[&str]); 8] = [
        (
            "resolved",
            filter(|f| f.status = Some(incidentd::incident::Status::Resolved)),
            &["INC-2026-0001"],
        ),
        (
            "service shop",
            filter(|f| f.service = Some("shop".into())),
            &["INC-2026-0002"],
        ),
        (
            "search alert name",
            filter(|f| f.search = Some("higherrorrate".into())),
            &["INC-2026-0001"],
        ),
        (
            "search id",
            filter(|f| f.search = Some("INC-2026-0002".into())),
            &["INC-2026-0002"],
        ),
        (
            "search a LIKE wildcard",
            filter(|f| f.search = Some("%".into())),
            &[],
        ),
        (
            "fired from 05:30",
            filter(|f| f.fired_from = Some(t("2026-11-23T05:30:00Z"))),
            &["INC-2026-0003"],
        ),
        (
            "fired until 05:30",
            filter(|f| f.fired_until = Some(t("2026-11-23T05:30:00Z"))),
            &["INC-2026-0002", "INC-2026-0001"],
        ),
        (
            "severity",
            filter(|f| f.severity = Some("critical".into())),
            &["INC-2026-0003", "INC-2026-0002", "INC-2026-0001"],
        ),
    ];
    for (name, filter, expected) in cases {
        let page = store.find_incidents(filter, None, 50).await.unwrap();
        let ids: Vec<&str> = page.incidents.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, expected, "find {name}");
        note!("find {name}: {ids:?}");
    }

    // The list, paged and filtered.
    let all = store
        .list_incidents(ListFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = all.incidents.iter().map(|i| i.id.clone()).collect();
    note!("ids {ids:?}");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let (cart, shop, first) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let mut before = None;
    loop {
        let page = store
            .list_incidents(ListFilter {
                limit: 2,
                before: before.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        note!(
            "page {:?} next {:?}",
            page.incidents.iter().map(|i| &i.id).collect::<Vec<_>>(),
            page.next_before
        );
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    for status in [
        incidentd::incident::Status::Open,
        incidentd::incident::Status::Resolved,
    ] {
        let page = store
            .list_incidents(ListFilter {
                status: Some(status),
                service: Some("shop".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        note!(
            "{status:?} shop: {:?}",
            page.incidents.iter().map(|i| &i.id).collect::<Vec<_>>()
        );
    }

    // Reports (src/report.rs): the range is half-open, the service filter exact.
    for (since, until, service) in [
        ("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z", None),
        ("2026-11-23T00:00:00Z", "2026-11-23T06:00:00Z", None),
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", Some("cart")),
    ] {
        let r = report(&store, since, until, service).await;
        let expected = match (until, service) {
            ("2026-11-24T00:00:00Z", None) => 3,
            (_, None) => 2,
            _ => 1,
        };
        assert_eq!(
            r["total"]["incidents"], expected,
            "{since}..{until} {service:?}"
        );
        note!("report {since}..{until} {service:?}: {r}");
    }
    let day = |store: &Store| {
        let store = store.clone();
        async move { report(&store, "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z", None).await }
    };
    let before_actions = day(&store).await;
    // People's actions.
    let act = |id: String, action: Action, at: &'static str| {
        let store = store.clone();
        async move {
            store
                .act(&id, "alice", action, t(at))
                .await
                .map(|i| format!("{i:?}"))
                .map_err(|e| e.to_string())
        }
    };
    note!(
        "ack {:?}",
        act(shop.clone(), Action::Acknowledge, "2026-11-23T05:01:00Z").await
    );
    note!(
        "note {:?}",
        act(
            shop.clone(),
            Action::Note("looking".into()),
            "2026-11-23T05:02:00Z"
        )
        .await
    );
    note!(
        "ack again {:?}",
        act(shop.clone(), Action::Acknowledge, "2026-11-23T05:03:00Z").await
    );
    note!(
        "resolve {:?}",
        act(cart.clone(), Action::Resolve, "2026-11-23T06:10:00Z").await
    );
    note!(
        "ack resolved {:?}",
        act(cart.clone(), Action::Acknowledge, "2026-11-23T06:11:00Z").await
    );
    note!(
        "missing {:?}",
        act(
            "INC-2099-0001".into(),
            Action::Resolve,
            "2026-11-23T06:11:00Z"
        )
        .await
    );

    // The report sees the actions at once: shop acknowledged, cart resolved.
    let after_actions = day(&store).await;
    note!("report after actions: {after_actions}");
    assert_eq!(
        before_actions["total"]["acknowledged"], 0,
        "{before_actions}"
    );
    assert_eq!(after_actions["total"]["acknowledged"], 1, "{after_actions}");
    assert_eq!(
        after_actions["total"]["resolved"].as_u64().unwrap(),
        before_actions["total"]["resolved"].as_u64().unwrap() + 1,
        "{after_actions}"
    );
    assert_eq!(after_actions["total"]["tta"]["n"], 1, "{after_actions}");
    assert_eq!(
        after_actions["total"]["tta"]["mean_seconds"], 55.0,
        "{after_actions}"
    );

    // The reconciler's view, and resolving what Alertmanager no longer has.
    let mut firing = store.firing_in_alertmanager().await.unwrap();
    firing.sort();
    note!("firing {firing:?}");
    let gone = vec![(
        ("aaaa000000000001".to_string(), t("2026-11-23T05:00:00Z")),
        t("2026-11-23T05:30:00Z"),
    )];
    note!(
        "gone {:?}",
        store
            .resolve_gone(gone, t("2026-11-23T05:31:00Z"))
            .await
            .unwrap()
    );

    // Evidence, charts, Slack, drafts.
    store
        .save_evidence(NewEvidence {
            incident_id: first.clone(),
            impact_start: Some((t("2026-11-23T02:26:20Z"), ImpactMethod::RuleReevaluation)),
            body: json!({ "rules": ["pool"], "n": 1 }),
            charts: vec![
                ("a.svg".into(), "<svg>a</svg>".into()),
                ("b.svg".into(), "<svg>b</svg>".into()),
            ],
            collected_at: t("2026-11-23T02:40:00Z"),
            next: Some((
                spec("evidence", json!({ "round": 2 }), true),
                t("2026-11-23T02:45:00Z"),
            )),
        })
        .await
        .unwrap();
    store
        .set_slack_thread(&first, "C123", "1700000000.000100")
        .await
        .unwrap();
    note!(
        "with evidence {:?}",
        store.incident_with_evidence(&first).await.unwrap()
    );
    // Evidence refined the first incident's impact start: its TTD and duration follow.
    let with_impact = day(&store).await;
    note!("report with evidence: {with_impact}");
    assert_ne!(
        with_impact["total"]["ttd"], after_actions["total"]["ttd"],
        "{with_impact}"
    );
    // Shop fires again (a new firing episode of its alert): the alerts' tallies and the
    // reopenings follow the incidents' own.
    let again = variant("aaaa000000000001", "2026-11-23T07:00:00Z", "shop");
    note!(
        "shop fires again: {:?}",
        ingest(&store, &again, t("2026-11-23T07:00:05Z")).await
    );
    let r = day(&store).await;
    note!("report after shop fired again: {r}");
    let listed = store
        .list_incidents(ListFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let (mut firings, mut reopened) = (0, Vec::new());
    for i in &listed.incidents {
        let i = store.incident(&i.id).await.unwrap().unwrap();
        firings += i.alerts.len() as u64;
        if i.reopen_count > 0 {
            reopened.push((i.id.clone(), i.reopen_count));
        }
    }
    let counted: u64 = r["top_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["firings"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, firings, "{r}");
    assert!(counted > 3, "shop's second firing is counted: {r}");
    let flapping: Vec<(String, u32)> = r["top_flapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["reopen_count"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert_eq!(flapping, reopened, "{r}");
    note!("chart {:?}", store.chart(&first, "b.svg").await.unwrap());
    note!("no chart {:?}", store.chart(&first, "c.svg").await.unwrap());
    note!("slack view {:?}", store.slack_view(&first).await.unwrap());
    let inputs = store.draft_inputs(&shop).await.unwrap().unwrap();
    note!(
        "draft inputs {:?} {:?} {:?} {:?} related {:?}",
        inputs.incident,
        inputs.evidence,
        inputs.charts,
        inputs.slack_thread,
        inputs
            .related
            .iter()
            .map(|r| (&r.incident.id, r.same_key, &r.shared_alertnames))
            .collect::<Vec<_>>()
    );
    note!("no incident {:?}", store.incident("INC-2099-0001").await);
    let draft = StoredDraft::new(&first, "# draft\n".into(), t("2026-11-23T03:00:00Z"));
    store.save_draft(draft).await.unwrap();
    store
        .save_draft(StoredDraft::new(
            &first,
            "# draft v2\n".into(),
            t("2026-11-23T03:05:00Z"),
        ))
        .await
        .unwrap();
    note!("draft {:?}", store.draft(&first).await.unwrap());
    note!("no draft {:?}", store.draft(&shop).await.unwrap());

    // Jobs: order per incident, leases, retries, coalescing.
    let t0 = t("2026-11-23T10:00:00Z");
    let s = |offset: i64| t0 + Duration::seconds(offset);
    let j1 = store
        .schedule(Some(&first), spec("t", json!({ "j": 1 }), false), s(0))
        .await
        .unwrap();
    let j2 = store
        .schedule(Some(&first), spec("t", json!({ "j": 2 }), false), s(1))
        .await
        .unwrap();
    let j3 = store
        .schedule(Some(&shop), spec("t", json!({ "j": 3 }), false), s(2))
        .await
        .unwrap();
    let c1 = store
        .schedule(Some(&shop), spec("c", json!({}), true), s(50))
        .await
        .unwrap();
    let c2 = store
        .schedule(Some(&shop), spec("c", json!({}), true), s(5))
        .await
        .unwrap();
    note!("scheduled {j1} {j2} {j3} coalesced {c1} {c2}");
    let claim = |at: DateTime<Utc>| {
        let store = store.clone();
        async move { format!("{:?}", store.claim_job("t", at).await.unwrap()) }
    };
    note!("claim {}", claim(s(10)).await);
    note!("claim {}", claim(s(10)).await);
    note!("claim (j2 waits for j1) {}", claim(s(10)).await);
    note!("renew {:?}", store.renew_job(j1, s(20)).await.unwrap());
    note!("renew a pending job {:?}", store.renew_job(j2, s(20)).await);
    note!("claim (j3's lease expired) {}", claim(s(75)).await);
    note!("claim (all expired) {}", claim(s(200)).await);
    store.complete_job(j1, s(201)).await.unwrap();
    note!("claim after j1 {}", claim(s(202)).await);
    store
        .fail_job(
            j2,
            "boom".into(),
            Some(Duration::minutes(1)),
            Some(json!({ "j": 2, "step": 1 })),
            s(203),
        )
        .await
        .unwrap();
    store
        .fail_job(j3, "fatal".into(), None, None, s(204))
        .await
        .unwrap();
    for id in [j1, j2, j3, c1, 9999] {
        note!("status {id} {:?}", store.job_status(id).await.unwrap());
    }
    note!("claim (j2 retries later) {}", claim(s(210)).await);
    note!("claim (j2 due) {}", claim(s(300)).await);
    note!(
        "claim c {:?}",
        store.claim_job("c", s(6)).await.unwrap().map(|j| j.id)
    );
    for id in [&first, &shop, &cart] {
        note!(
            "jobs of {id} {:?}",
            store.jobs_of_incident(id).await.unwrap()
        );
    }
    note!("overview {:?}", store.overview().await.unwrap());

    // Named leases.
    let now = s(400);
    let ttl = std::time::Duration::from_secs(30);
    note!(
        "lease {:?}",
        store.acquire_lease("reconcile", now, ttl).await.unwrap()
    );
    note!(
        "lease kept {:?}",
        store.acquire_lease("reconcile", now, ttl).await.unwrap()
    );
    store.release_lease("reconcile").await.unwrap();
    note!(
        "lease again {:?}",
        store.acquire_lease("reconcile", now, ttl).await.unwrap()
    );

    // Pruning: notifications and finished jobs before the cutoff, resolved incidents.
    note!(
        "prune nothing {:?}",
        store.prune(t("2026-01-01T00:00:00Z"), None).await.unwrap()
    );
    note!(
        "prune {:?}",
        store
            .prune(t("2026-11-23T05:00:00Z"), Some(t("2026-11-23T06:20:00Z")))
            .await
            .unwrap()
    );
    note!(
        "left {:?}",
        store
            .list_incidents(ListFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .incidents
            .iter()
            .map(|i| (&i.id, i.status))
            .collect::<Vec<_>>()
    );
    note!("pruned incident {:?}", store.incident(&cart).await.unwrap());
    note!("ping {:?}", store.ping().await);
    store.close().await;
    log
}

/// The report over `[since, until)` (UTC, per week, read at `until`), as its JSON.
async fn report(store: &Store, since: &str, until: &str, service: Option<&str>) -> Value {
    let query = incidentd::store::ReportQuery {
        since: t(since),
        until: t(until),
        service: service.map(str::to_string),
    };
    let rows = store
        .report_rows(query.clone(), incidentd::report::TOP)
        .await
        .unwrap();
    let r = incidentd::report::build(
        &query,
        incidentd::report::Period::Week,
        chrono_tz::UTC,
        query.until,
        &rows,
    );
    serde_json::to_value(&r).unwrap()
}

fn assert_same(sqlite: &[String], postgres: &[String]) {
    for (i, (a, b)) in sqlite.iter().zip(postgres).enumerate() {
        assert_eq!(a, b, "step {i} differs between SQLite and PostgreSQL");
    }
    assert_eq!(sqlite.len(), postgres.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_give_identical_results_for_the_same_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(dir.path())
        .unwrap()
        .with_followups(Arc::new(Rules::default()), planner());
    let from_sqlite = scenarios(sqlite).await;
    assert!(
        from_sqlite.iter().any(|l| l.contains("INC-2026-0003")),
        "{from_sqlite:#?}"
    );
    let Some(cluster) = pg::shared_or_skip("identical_results") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("scenarios"));
    let from_postgres = scenarios(open_pg(&url).await).await;
    assert_same(&from_sqlite, &from_postgres);
}

/// Two replicas, the same notifications posted to both at once, over and over: one incident,
/// every notification counted, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_ingesting_the_same_key_concurrently_make_one_incident() {
    let Some(cluster) = pg::shared_or_skip("replicas_ingest") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("replicas_ingest"));
    let (a, b) = (open_pg(&url).await, open_pg(&url).await);
    assert_ne!(a.holder(), b.holder());
    const ROUNDS: usize = 15;
    const PER_ROUND: usize = 8;
    let base = t("2026-11-23T08:00:00Z");
    for round in 0..ROUNDS {
        let starts = (base + Duration::seconds(round as i64)).to_rfc3339();
        let body = Arc::new(variant(&format!("fp{round:014}"), &starts, "pay"));
        let mut tasks = Vec::new();
        for n in 0..PER_ROUND {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            let body = body.clone();
            let at = base + Duration::seconds(60 + round as i64);
            tasks.push(tokio::spawn(async move { ingest(&store, &body, at).await }));
        }
        for task in tasks {
            task.await.unwrap().expect("every notification is accepted");
        }
    }
    // Two keys interleaved on both replicas: batches lock them in either order (a busy key
    // defers the operation to the next transaction rather than deadlock).
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for n in 0..PER_ROUND {
            let store = if (n + round) % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            let service = if n % 2 == 0 { "x" } else { "y" };
            let starts = (base + Duration::seconds(round as i64)).to_rfc3339();
            let body = variant(&format!("{service}{round:014}"), &starts, service);
            let at = base + Duration::seconds(60 + round as i64);
            tasks.push(tokio::spawn(async move { ingest(&store, &body, at).await }));
        }
        for task in tasks {
            task.await.unwrap().expect("every notification is accepted");
        }
    }
    // Different keys at once on both replicas: incidents numbered without collisions.
    let mut tasks = Vec::new();
    for n in 0..12 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let body = variant(
            &format!("svc{n:013}"),
            "2026-11-23T09:00:00Z",
            &format!("svc-{n}"),
        );
        tasks.push(tokio::spawn(async move {
            ingest(&store, &body, t("2026-11-23T09:00:01Z")).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("accepted");
    }

    let page = a
        .list_incidents(ListFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: BTreeSet<&str> = page.incidents.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 15, "{ids:?}");
    assert_eq!(page.incidents.len(), 15);
    for service in ["x", "y"] {
        let of: Vec<_> = page
            .incidents
            .iter()
            .filter(|i| i.service.as_deref() == Some(service))
            .collect();
        assert_eq!(of.len(), 1, "{service}");
        let i = a.incident(&of[0].id).await.unwrap().unwrap();
        assert_eq!(i.alerts.len(), ROUNDS);
        assert_eq!(i.notifications.received as usize, ROUNDS * PER_ROUND / 2);
    }
    let pay: Vec<_> = page
        .incidents
        .iter()
        .filter(|i| i.service.as_deref() == Some("pay"))
        .collect();
    assert_eq!(pay.len(), 1, "one incident for the key: {pay:#?}");
    let pay = b.incident(&pay[0].id).await.unwrap().unwrap();
    assert_eq!(pay.alerts.len(), ROUNDS);
    assert_eq!(pay.notifications.received as usize, ROUNDS * PER_ROUND);
    assert_eq!(
        pay.notifications.duplicate as usize,
        ROUNDS * (PER_ROUND - 1)
    );

    let config = pg_config(&url);
    let (notifications, seqs, distinct) = tokio::task::spawn_blocking(move || {
        let mut c = incidentd::store::postgres::connect(&config).unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM notifications", &[])
            .unwrap()
            .get(0);
        let seqs: Vec<i64> = c
            .query("SELECT seq FROM incidents ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let distinct: i64 = c
            .query_one("SELECT count(*) FROM payloads", &[])
            .unwrap()
            .get(0);
        (n, seqs, distinct)
    })
    .await
    .unwrap();
    assert_eq!(notifications as usize, 2 * ROUNDS * PER_ROUND + 12);
    assert_eq!(seqs, (1..=15).collect::<Vec<i64>>(), "dense, unique seq");
    assert_eq!(distinct as usize, 3 * ROUNDS + 12, "each body stored once");
    a.close().await;
    b.close().await;
}

/// Two replicas claiming jobs at once: each job runs once, in order per incident; a dead
/// replica's job is claimed by the other when its lease expires; named leases exclude.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_claim_each_job_once() {
    let Some(cluster) = pg::shared_or_skip("replicas_claim") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("replicas_claim"));
    let (a, b) = (open_pg(&url).await, open_pg(&url).await);
    let mut incidents = Vec::new();
    for n in 0..6 {
        let body = variant(
            &format!("job{n:013}"),
            "2026-11-23T09:00:00Z",
            &format!("svc-{n}"),
        );
        ingest(&a, &body, t("2026-11-23T09:00:01Z")).await.unwrap();
    }
    for i in a
        .list_incidents(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .incidents
    {
        incidents.push(i.id);
    }
    let now = t("2026-11-23T10:00:00Z");
    let mut scheduled = Vec::new();
    for k in 0..5 {
        for id in &incidents {
            let job = a
                .schedule(Some(id), spec("work", json!({ "k": k }), false), now)
                .await
                .unwrap();
            scheduled.push((id.clone(), job));
        }
    }
    let claimed = Arc::new(std::sync::Mutex::new(Vec::<(String, i64, String)>::new()));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                match store.claim_job("work", now).await.unwrap() {
                    Some(job) => {
                        idle = 0;
                        claimed.lock().unwrap().push((
                            job.incident_id.clone().unwrap(),
                            job.id,
                            store.holder().to_string(),
                        ));
                        store.complete_job(job.id, now).await.unwrap();
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let ids: Vec<i64> = claimed.iter().map(|(_, id, _)| *id).collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "a job was claimed twice: {claimed:?}"
    );
    assert_eq!(
        unique,
        scheduled.iter().map(|(_, id)| *id).collect(),
        "every job ran"
    );
    let holders: BTreeSet<&str> = claimed.iter().map(|(_, _, h)| h.as_str()).collect();
    assert_eq!(holders.len(), 2, "both replicas worked");
    // Per incident, jobs ran in the order they were queued.
    let mut per_incident: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (incident, id, _) in &claimed {
        per_incident.entry(incident).or_default().push(*id);
    }
    for (incident, order) in per_incident {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{incident}");
    }

    // A replica dies holding a job: the other claims it once the lease expires.
    let job = a
        .schedule(Some(&incidents[0]), spec("lease", json!({}), false), now)
        .await
        .unwrap();
    let got = a.claim_job("lease", now).await.unwrap().unwrap();
    assert_eq!((got.id, got.attempts), (job, 0));
    assert_eq!(b.claim_job("lease", now).await.unwrap(), None);
    let later = now + Duration::minutes(2);
    let again = b.claim_job("lease", later).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (job, 1));
    assert!(!a.renew_job(job, later).await.unwrap(), "no longer a's job");
    assert!(b.renew_job(job, later).await.unwrap());

    // Named leases.
    let ttl = std::time::Duration::from_secs(30);
    assert!(a.acquire_lease("reconcile", now, ttl).await.unwrap());
    assert!(!b.acquire_lease("reconcile", now, ttl).await.unwrap());
    assert!(b
        .acquire_lease("reconcile", now + Duration::seconds(31), ttl)
        .await
        .unwrap());
    assert!(!a
        .acquire_lease("reconcile", now + Duration::seconds(32), ttl)
        .await
        .unwrap());
    b.release_lease("reconcile").await.unwrap();
    assert!(a
        .acquire_lease("reconcile", now + Duration::seconds(33), ttl)
        .await
        .unwrap());
    a.close().await;
    b.close().await;
}

/// PostgreSQL goes away: writes fail with a transient error (a webhook answers 503), the
/// ping fails; it comes back: the same store works again, without reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_survives_postgresql_stopping_and_starting() {
    let Some(mut cluster) = pg::Cluster::start_or_skip("outage") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("outage"));
    let store = open_pg(&url).await;
    let (_, at, body) = &recorded_webhooks()[0];
    ingest(&store, body, *at).await.expect("before the outage");
    store.ping().await.expect("ping");

    tokio::task::block_in_place(|| cluster.stop());
    let err = store
        .ingest(
            incidentd::alertmanager::decode(body).unwrap(),
            bytes::Bytes::copy_from_slice(body),
            *at + Duration::seconds(1),
        )
        .await
        .expect_err("PostgreSQL is down");
    assert!(err.is_transient(), "{err}");
    let err = store.ping().await.expect_err("PostgreSQL is down");
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("password"));

    tokio::task::block_in_place(|| cluster.start());
    store.ping().await.expect("ping after the restart");
    ingest(&store, body, *at + Duration::seconds(2))
        .await
        .expect("after the outage");
    let page = store
        .list_incidents(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.incidents.len(), 1);
    assert_eq!(
        page.incidents[0].notifications.received, 2,
        "the write during the outage was not kept"
    );
    store.close().await;
}

/// Holds the advisory lock of a correlation key from another session until `release` is sent.
fn hold_key(url: &str, key: &str) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let config = pg_config(url);
    let key = key.to_string();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut c = incidentd::store::postgres::connect(&config).unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv();
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();
    (release_tx, handle)
}

/// A write whose correlation key another replica holds does not hold back the writes queued
/// with it: in the middle of a batch it is deferred to the next transaction (where, first, it
/// waits for the key) instead of waiting while holding the batch's locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_defers_its_write_and_the_rest_of_the_batch_commits() {
    let Some(cluster) = pg::shared_or_skip("busy_key") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("busy_key"));
    let mut config = pg_config(&url);
    config.pool_size = 1; // one writer: the batches are predictable
    let store = tokio::task::spawn_blocking(move || Store::open_postgres(&config))
        .await
        .unwrap()
        .unwrap();
    let first = variant("zzzz000000000001", "2026-11-23T09:00:00Z", "z");
    ingest(&store, &first, t("2026-11-23T09:00:01Z"))
        .await
        .unwrap();
    let incident = "INC-2026-0001".to_string();

    // The writer waits for z (first in its batch) while the next operations queue up.
    let (release_z, z) = tokio::task::block_in_place(|| hold_key(&url, "service=\"z\""));
    let (release_x, x) = tokio::task::block_in_place(|| hold_key(&url, "service=\"x\""));
    let waiting = {
        let (store, body) = (store.clone(), first.clone());
        tokio::spawn(async move { ingest(&store, &body, t("2026-11-23T09:00:02Z")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let schedule = |n: i64| {
        let (store, incident) = (store.clone(), incident.clone());
        tokio::spawn(async move {
            store
                .schedule(
                    Some(&incident),
                    spec("work", json!({ "n": n }), false),
                    t("2026-11-23T10:00:00Z"),
                )
                .await
        })
    };
    let before = schedule(1);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let busy = {
        let store = store.clone();
        let body = variant("xxxx000000000001", "2026-11-23T09:00:00Z", "x");
        tokio::spawn(async move { ingest(&store, &body, t("2026-11-23T09:00:03Z")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let after = schedule(2);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!before.is_finished() && !busy.is_finished() && !after.is_finished());

    // z is free: [schedule, ingest x, schedule] is the next batch; x is busy, so that ingest
    // waits for the batch after, and both schedules commit now.
    release_z.send(()).unwrap();
    tokio::task::block_in_place(|| z.join().unwrap());
    waiting.await.unwrap().expect("z's write");
    let five = std::time::Duration::from_secs(5);
    tokio::time::timeout(five, before)
        .await
        .expect("not held back by the busy key")
        .unwrap()
        .expect("scheduled before");
    tokio::time::timeout(five, after)
        .await
        .expect("not held back by the busy key")
        .unwrap()
        .expect("scheduled after");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!busy.is_finished(), "x is still held");

    release_x.send(()).unwrap();
    tokio::task::block_in_place(|| x.join().unwrap());
    let outcome = busy.await.unwrap().expect("x's write, deferred");
    assert!(outcome.contains("INC-2026-0002"), "{outcome}");
    store.close().await;
}

/// PostgreSQL closes the store's sessions (a failover, an idle timeout, an operator): the next
/// write runs again on a new session and succeeds; so does the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_survive_their_sessions_being_terminated() {
    let Some(cluster) = pg::shared_or_skip("terminated") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("terminated"));
    let store = open_pg(&url).await;
    let (_, at, body) = &recorded_webhooks()[0];
    ingest(&store, body, *at).await.expect("first");
    store.ping().await.expect("ping");
    let config = pg_config(&url);
    let killed: i64 = tokio::task::spawn_blocking(move || {
        let mut c = incidentd::store::postgres::connect(&config).unwrap();
        c.query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
    })
    .await
    .unwrap();
    assert!(killed >= 1, "the store's sessions were open");
    ingest(&store, body, *at + Duration::seconds(1))
        .await
        .expect("run again on a new session");
    let page = store
        .list_incidents(ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read on a new session");
    assert_eq!(page.incidents[0].notifications.received, 2);
    store.close().await;
}

/// What a node made of a corpus, as far as it is independent of the order of arrival: each
/// incident by its key, status, span and alerts (ids are handed out in arrival order).
async fn summary(store: &Store) -> BTreeSet<String> {
    let page = store
        .list_incidents(ListFilter {
            limit: 500,
            ..ListFilter::default()
        })
        .await
        .expect("list");
    let mut out = BTreeSet::new();
    for i in page.incidents {
        let full = store.incident(&i.id).await.expect("read").expect("exists");
        let alerts: BTreeSet<String> = full
            .alerts
            .iter()
            .map(|a| {
                format!(
                    "{} {} {:?} {:?}",
                    a.fingerprint, a.starts_at, a.status, a.ends_at
                )
            })
            .collect();
        out.insert(format!(
            "{} {:?} fired {} resolved {:?} alerts {alerts:?}",
            full.key, full.status, full.fired_at, full.resolved_at
        ));
    }
    out
}

/// The recorded scenario and firings of other services, split at random between two replicas
/// on one PostgreSQL and delivered concurrently, round after round (bounded): the same
/// incidents as one node on SQLite that took them in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corpus_split_at_random_between_two_replicas_makes_the_same_incidents_as_one_node() {
    let Some(cluster) = pg::shared_or_skip("corpus_split") else {
        return;
    };
    let mut corpus: Vec<(DateTime<Utc>, Vec<u8>)> = recorded_webhooks()
        .into_iter()
        .map(|(_, at, body)| (at, body))
        .collect();
    let base = t("2026-11-23T02:20:00Z");
    for (n, service) in ["checkout", "search", "ledger", "payment-service"]
        .iter()
        .enumerate()
    {
        for k in 0..3 {
            let starts = base + Duration::seconds(40 * k + n as i64);
            corpus.push((
                starts + Duration::seconds(2),
                variant(
                    &format!("{n:02}{k:014}"),
                    &starts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    service,
                ),
            ));
        }
    }
    // One node, in order of receipt.
    let dir = tempfile::tempdir().unwrap();
    let one = Store::open_sqlite(dir.path())
        .unwrap()
        .with_followups(Arc::new(Rules::default()), planner());
    let mut ordered = corpus.clone();
    ordered.sort_by_key(|(at, _)| *at);
    for (at, body) in &ordered {
        ingest(&one, body, *at).await.expect("accepted");
    }
    let want = summary(&one).await;
    one.close().await;
    assert!(want.len() >= 4, "{want:#?}");

    const ROUNDS: u64 = 6;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..ROUNDS {
        let name: &'static str = Box::leak(format!("corpus_{round}").into_boxed_str());
        let url = tokio::task::block_in_place(|| cluster.create_database(name));
        let (a, b) = (open_pg(&url).await, open_pg(&url).await);
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        let mut shuffled = corpus.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for item in shuffled {
            if next() % 2 == 0 {
                to_a.push(item);
            } else {
                to_b.push(item);
            }
        }
        let deliver = |store: Store, items: Vec<(DateTime<Utc>, Vec<u8>)>| {
            tokio::spawn(async move {
                for (at, body) in items {
                    ingest(&store, &body, at).await.expect("accepted");
                }
            })
        };
        let (ta, tb) = (deliver(a.clone(), to_a), deliver(b.clone(), to_b));
        ta.await.unwrap();
        tb.await.unwrap();
        assert_eq!(summary(&a).await, want, "round {round}: replica a");
        assert_eq!(summary(&b).await, want, "round {round}: replica b");
        a.close().await;
        b.close().await;
    }
}

/// The Slack conversation operations (events recorded once, replies and their changes,
/// names, a channel's incidents), as a transcript.
async fn slack_conversation(store: Store) -> Vec<String> {
    use incidentd::incident::conversation::{CaptureRules, ThreadChange};
    use incidentd::store::slack::{Reply, Target};
    let mut log = Vec::new();
    let (_, at, body) = &recorded_webhooks()[0];
    ingest(&store, body, *at).await.unwrap();
    let id = "INC-2026-0001";
    store
        .set_slack_thread(id, "C1", "1795400789.000100")
        .await
        .unwrap();
    let thread = Target::Thread {
        channel: "C1".into(),
        thread_ts: "1795400789.000100".into(),
    };
    let reply = |ts: &str, text: &str| Reply {
        ts: ts.into(),
        user: "U1".into(),
        text: text.into(),
    };
    let job = spec("slack_thread", json!({"ts": "1795400800.000200"}), false);
    let now = t("2026-11-23T02:27:00Z");
    for (event_id, target) in [
        ("Ev1", thread.clone()),
        ("Ev1", thread.clone()),
        (
            "Ev2",
            Target::Thread {
                channel: "C1".into(),
                thread_ts: "1.000000".into(),
            },
        ),
        (
            "Ev3",
            Target::Message {
                channel: "C1".into(),
                ts: "1795400800.000200".into(),
            },
        ),
    ] {
        let received = store
            .receive_slack_event(
                event_id,
                target,
                Some(reply("1795400800.000200", "looking")),
                job.clone(),
                now,
            )
            .await
            .unwrap();
        log.push(format!("{event_id}: {received:?}"));
    }
    let rules = CaptureRules::default();
    for change in [
        ThreadChange::Posted {
            author: "Alice".into(),
            mentions: vec![],
        },
        ThreadChange::Posted {
            author: "Alice".into(),
            mentions: vec![],
        },
        ThreadChange::Edited {
            text: "looking at the pool".into(),
            at: t("2026-11-23T02:26:50Z"),
        },
        ThreadChange::Deleted {
            at: t("2026-11-23T02:26:55Z"),
        },
    ] {
        let rows = store
            .apply_thread_change("C1", "1795400800.000200", change, rules.clone())
            .await
            .unwrap();
        log.push(format!("{rows:?}"));
    }
    store.save_slack_user("U1", "Alice", now).await.unwrap();
    log.push(format!("{:?}", store.slack_user("U1").await.unwrap()));
    log.push(format!("{:?}", store.slack_user("U2").await.unwrap()));
    log.push(format!(
        "{:?}",
        store.channel_incidents("C1").await.unwrap()
    ));
    log.push(format!(
        "{:?}",
        store.channel_incidents("C2").await.unwrap()
    ));
    let inputs = store.draft_inputs(id).await.unwrap().unwrap();
    log.push(format!("{:?}", inputs.thread_messages));
    log.push(format!("{:?}", inputs.incident.timeline));
    log.push(format!(
        "{:?}",
        store.prune(t("2026-11-23T02:28:00Z"), None).await.unwrap()
    ));
    store.close().await;
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_conversations_are_stored_alike_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(dir.path())
        .unwrap()
        .with_followups(Arc::new(Rules::default()), planner());
    let from_sqlite = slack_conversation(sqlite).await;
    assert!(from_sqlite[1].contains("Duplicate"), "{from_sqlite:#?}");
    assert!(from_sqlite[2].contains("NotOurs"), "{from_sqlite:#?}");
    assert!(from_sqlite[3].contains("Queued"), "{from_sqlite:#?}");
    assert!(
        from_sqlite[5] == "[]",
        "a retried change appends nothing: {from_sqlite:#?}"
    );
    let Some(cluster) = pg::shared_or_skip("slack_conversations") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("slack_conversations"));
    let from_postgres = slack_conversation(open_pg(&url).await).await;
    assert_same(&from_sqlite, &from_postgres);
}

/// Queues `deliveries` on `store` (one writer) behind a batch that waits for the key
/// `service="z"`, held by another session: released, they run together in one transaction.
/// Returns what each ingest answered, in order.
async fn ingest_in_one_batch(
    store: &Store,
    url: &str,
    deliveries: &[(Vec<u8>, DateTime<Utc>)],
) -> Vec<Result<String, String>> {
    let (release, holder) = tokio::task::block_in_place(|| hold_key(url, "service=\"z\""));
    let mut tasks = Vec::new();
    for (body, at) in deliveries {
        let (store, body, at) = (store.clone(), body.clone(), *at);
        tasks.push(tokio::spawn(async move { ingest(&store, &body, at).await }));
        // Queued in this order.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert!(tasks.iter().all(|t| !t.is_finished()), "the key is held");
    release.send(()).unwrap();
    tokio::task::block_in_place(|| holder.join().unwrap());
    let mut out = Vec::new();
    for task in tasks {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("answered once the key is free")
            .unwrap();
        out.push(answer);
    }
    out
}

/// Rows of a table, counted on a session of its own.
fn count_rows(url: &str, table: &str) -> i64 {
    let mut c = incidentd::store::postgres::connect(&pg_config(url)).unwrap();
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

/// Repeats that one transaction takes together (their notification records, touches and
/// counters postponed to one statement each, `seen` answered from what the transaction
/// already read, the key's lock taken once), mixed with deliveries that change the incident
/// (annotations, an earlier receipt, a new alert, a resolve, a stale firing), end exactly as
/// the same deliveries taken one at a time on SQLite: the same answers, the same incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_taken_in_one_transaction_end_as_taken_one_at_a_time() {
    let Some(cluster) = pg::shared_or_skip("batched_repeats") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("batched_repeats"));
    let mut config = pg_config(&url);
    config.pool_size = 1; // one writer: the batches are predictable
    let pg = tokio::task::spawn_blocking(move || Store::open_postgres(&config))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(dir.path()).unwrap();

    let first = variant("zzzz000000000001", "2026-11-23T09:00:00Z", "z");
    let text = String::from_utf8(first.clone()).unwrap();
    let changed = text
        .replace(
            "Database connection pool nearly exhausted",
            "Connection pool still exhausted",
        )
        .into_bytes();
    let resolved = text
        .replacen("\"status\":\"firing\"", "\"status\":\"resolved\"", 2)
        .replace("0001-01-01T00:00:00Z", "2026-11-23T09:30:00Z")
        .into_bytes();
    let second = variant("zzzz000000000002", "2026-11-23T09:00:10Z", "z");
    let at = |s: &str| t(&format!("2026-11-23T09:00:{s}Z"));
    let deliveries = vec![
        (first.clone(), at("02")),
        (first.clone(), at("03")),
        (changed.clone(), at("04")),
        (first.clone(), at("04.250")), // the annotations change back
        (first.clone(), at("00.500")), // earlier than any receipt so far
        (changed.clone(), at("05")),
        (second.clone(), at("06")), // a new alert joins
        (second.clone(), at("07")),
        (first.clone(), at("08")),
        (resolved, at("09")),
        (first.clone(), at("10")), // stale
        (second.clone(), at("11")),
        (changed, at("12")),
        (first.clone(), at("13")),
    ];

    let mut answers = Vec::new();
    for store in [&sqlite, &pg] {
        let mut log = vec![ingest(store, &first, at("01")).await];
        if std::ptr::eq(store, &pg) {
            log.extend(ingest_in_one_batch(store, &url, &deliveries).await);
        } else {
            for (body, when) in &deliveries {
                log.push(ingest(store, body, *when).await);
            }
        }
        let incident = store.incident("INC-2026-0001").await.unwrap();
        answers.push((log, format!("{incident:#?}")));
    }
    let (postgres, sqlite_answers) = (answers.pop().unwrap(), answers.pop().unwrap());
    assert!(postgres.0.iter().all(Result::is_ok), "{:#?}", postgres.0);
    assert_eq!(sqlite_answers.0, postgres.0, "the answers");
    assert_eq!(sqlite_answers.1, postgres.1, "the incident");
    assert!(postgres.1.contains("nearly exhausted") && !postgres.1.contains("still exhausted"));
    let counts = tokio::task::block_in_place(|| {
        (
            count_rows(&url, "notifications"),
            count_rows(&url, "payloads"),
        )
    });
    assert_eq!(
        counts,
        (1 + deliveries.len() as i64, 4),
        "(notifications, bodies)"
    );
    pg.close().await;
    sqlite.close().await;
}

/// A notification the server refuses (text with a NUL character) among repeats taken in one
/// transaction fails alone: the others commit, as when every statement ran at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_notification_in_a_batch_of_repeats_fails_alone() {
    let Some(cluster) = pg::shared_or_skip("refused_in_batch") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("refused_in_batch"));
    let mut config = pg_config(&url);
    config.pool_size = 1;
    let store = tokio::task::spawn_blocking(move || Store::open_postgres(&config))
        .await
        .unwrap()
        .unwrap();
    let first = variant("zzzz000000000001", "2026-11-23T09:00:00Z", "z");
    let refused = String::from_utf8(first.clone())
        .unwrap()
        .replace(
            "\"receiver\":\"e2e-webhook\"",
            "\"receiver\":\"e2e\\u0000webhook\"",
        )
        .into_bytes();
    assert_ne!(refused, first);
    ingest(&store, &first, t("2026-11-23T09:00:01Z"))
        .await
        .unwrap();
    let at = |s: &str| t(&format!("2026-11-23T09:00:{s}Z"));
    let deliveries = vec![
        (first.clone(), at("02")),
        (first.clone(), at("03")),
        (refused, at("04")),
        (first.clone(), at("05")),
    ];
    let answers = ingest_in_one_batch(&store, &url, &deliveries).await;
    assert!(
        answers[0].is_ok() && answers[1].is_ok() && answers[3].is_ok(),
        "{answers:#?}"
    );
    let refused = answers[2]
        .as_ref()
        .expect_err("the server refuses a NUL in text");
    assert!(refused.contains("transient: false"), "{refused}");
    let incident = store.incident("INC-2026-0001").await.unwrap().unwrap();
    assert_eq!(incident.notifications.received, 4);
    assert_eq!(
        tokio::task::block_in_place(|| count_rows(&url, "notifications")),
        4
    );
    store.close().await;
}

/// A shared secret (the pages' form tokens) is made once and then the same for every store on
/// the database: two replicas on PostgreSQL, and SQLite across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_secret_is_made_once_and_the_same_for_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open_sqlite(dir.path()).unwrap();
    let made = first.shared_secret("s", [1; 32]).await.unwrap();
    assert_eq!(made, vec![1; 32]);
    first.close().await;
    let again = Store::open_sqlite(dir.path()).unwrap();
    assert_eq!(
        again.shared_secret("s", [2; 32]).await.unwrap(),
        vec![1; 32]
    );
    assert_eq!(
        again.shared_secret("t", [3; 32]).await.unwrap(),
        vec![3; 32]
    );
    again.close().await;

    let Some(cluster) = pg::shared_or_skip("shared_secret") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("shared_secret"));
    let (a, b) = (open_pg(&url).await, open_pg(&url).await);
    let (from_a, from_b) =
        tokio::join!(a.shared_secret("s", [4; 32]), b.shared_secret("s", [5; 32]));
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(from_a, from_b, "both replicas use the first one stored");
    assert!(from_a == vec![4; 32] || from_a == vec![5; 32]);
    a.close().await;
    b.close().await;
}

/// One alert in a notification of its own, from webhook 01: `service` is the correlation key
/// (one incident per service), `summary` the incident's title while the alert leads it.
fn one_alert(
    name: &str,
    summary: &str,
    service: &str,
    severity: &str,
    fingerprint: &str,
    starts_at: DateTime<Utc>,
    resolved: bool,
) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&recorded_webhooks()[0].2).unwrap();
    let status = if resolved { "resolved" } else { "firing" };
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let alert = &mut body["alerts"][0];
    alert["labels"]["alertname"] = json!(name);
    alert["labels"]["service"] = json!(service);
    alert["labels"]["severity"] = json!(severity);
    alert["annotations"]["summary"] = json!(summary);
    alert["fingerprint"] = json!(fingerprint);
    alert["startsAt"] = json!(stamp(starts_at));
    alert["status"] = json!(status);
    if resolved {
        alert["endsAt"] = json!(stamp(starts_at + Duration::minutes(5)));
    }
    let (labels, annotations) = (alert["labels"].clone(), alert["annotations"].clone());
    body["status"] = json!(status);
    body["commonLabels"] = labels;
    body["commonAnnotations"] = annotations;
    body["groupLabels"] = json!({ "alertname": name, "service": service });
    body["groupKey"] = json!(format!(
        "{{}}:{{alertname=\"{name}\", service=\"{service}\"}}"
    ));
    serde_json::to_vec(&body).unwrap()
}

/// Incidents enough that both phases (unresolved, resolved) outgrow the walk a search starts
/// with, so the trigram index answers too; a few with the names and titles the terms look for,
/// spread among the others.
async fn search_corpus(store: &Store) {
    let base = t("2026-11-20T00:00:00Z");
    for i in 0..520u32 {
        let (name, summary) = match i % 50 {
            3 => (
                "HighErrorRate",
                "Error rate above 5% on checkout".to_string(),
            ),
            11 => ("DiskAlmostFull", "Disk almost full on Node-7".to_string()),
            17 => ("Überlast", "ÜBERLAST im Cluster".to_string()),
            23 => ("rate_100%", "50_percent of x done".to_string()),
            29 => ("Q", "q".to_string()),
            // Short terms after a character outside ASCII, after an ASCII one, at the start;
            // texts of 2 characters.
            37 => ("ÖDB", "Ödb".to_string()),
            41 => ("Xdb", "Xdb".to_string()),
            43 => ("DbPrefix", "Dbprefix".to_string()),
            47 => ("Xy", "xy".to_string()),
            // The first and the last incident share an alert name no other has: the last's
            // related incident is 518 incidents older, past the walk of the newest 500.
            _ if i == 0 || i == 519 => ("RareTwin", format!("Routine check {i}")),
            // A pair of characters in a row in two blocks of nine: a two-character term
            // visits only those (migration 16).
            _ if [100, 300, 301].contains(&i) => ("WjPair", format!("Routine wj {i}")),
            _ => ("Filler", format!("Routine check {i}")),
        };
        let service = format!("svc-{i}");
        let starts = base + Duration::minutes(i64::from(i));
        let fingerprint = format!("{i:016x}");
        let firing = one_alert(
            name,
            &summary,
            &service,
            "warning",
            &fingerprint,
            starts,
            false,
        );
        ingest(store, &firing, starts + Duration::seconds(5))
            .await
            .unwrap();
        if i % 2 == 0 {
            let resolved = one_alert(
                name,
                &summary,
                &service,
                "warning",
                &fingerprint,
                starts,
                true,
            );
            ingest(store, &resolved, starts + Duration::minutes(6))
                .await
                .unwrap();
        }
    }
    // Open incidents change: a more severe alert joins one (its title changes), another alert
    // joins another (its alert names grow).
    for (i, name, summary, severity) in [
        (3u32, "NewAlertJoined", "Brand new title", "critical"),
        (53, "SecondAlert", "Not the title", "warning"),
    ] {
        let starts = base + Duration::minutes(i64::from(i)) + Duration::seconds(30);
        let body = one_alert(
            name,
            summary,
            &format!("svc-{i}"),
            severity,
            &format!("{:016x}", 10_000 + i),
            starts,
            false,
        );
        ingest(store, &body, starts + Duration::seconds(5))
            .await
            .unwrap();
    }
}

/// What a search must find, by testing every incident: an id starting with the term, a title
/// or an alert name containing it, ASCII case-insensitive; in the page's order.
fn scan(incidents: &[incidentd::incident::Incident], filter: &IncidentFilter) -> Vec<String> {
    let q = filter.search.as_deref().unwrap_or("").to_ascii_lowercase();
    incidents
        .iter()
        .filter(|i| {
            i.id.to_ascii_lowercase().starts_with(&q)
                || i.title.to_ascii_lowercase().contains(&q)
                || i.alerts
                    .iter()
                    .any(|a| a.alertname.to_ascii_lowercase().contains(&q))
        })
        .filter(|i| filter.status.is_none_or(|s| i.status == s))
        .filter(|i| filter.service.is_none() || i.service == filter.service)
        .filter(|i| filter.severity.is_none() || i.severity == filter.severity)
        .filter(|i| filter.fired_from.is_none_or(|t| i.fired_at >= t))
        .filter(|i| filter.fired_until.is_none_or(|t| i.fired_at < t))
        .map(|i| i.id.clone())
        .collect()
}

/// Every page of a search, `limit` at a time: the ids in order.
async fn search_pages(store: &Store, filter: &IncidentFilter, limit: u32) -> Vec<String> {
    let (mut ids, mut after) = (Vec::new(), None);
    for _ in 0..200 {
        let page = store
            .find_incidents(filter.clone(), after, limit)
            .await
            .unwrap();
        assert!(page.incidents.len() <= limit as usize);
        ids.extend(page.incidents.into_iter().map(|i| i.id));
        match page.next {
            Some(next) => after = Some(next),
            None => return ids,
        }
    }
    panic!("more than 200 pages of {filter:?}");
}

/// The searches, each checked against [`scan`]: returns what each found, to compare the
/// backends too.
async fn searches(store: Store) -> Vec<String> {
    search_corpus(&store).await;
    // Every incident with its alerts, in the page's order (unresolved first, newest first).
    let mut all = Vec::new();
    for id in search_pages(&store, &IncidentFilter::default(), 200).await {
        all.push(store.incident(&id).await.unwrap().expect("listed"));
    }
    assert_eq!(all.len(), 520);
    let open = all
        .iter()
        .filter(|i| i.status.as_str() != "resolved")
        .count();
    assert!(open > 200 && all.len() - open > 200, "{open} open");
    let changed = all.iter().find(|i| i.service.as_deref() == Some("svc-3"));
    assert_eq!(changed.unwrap().title, "Brand new title");

    let terms = [
        "higherror",
        "HIGHERRORRATE",
        "disk almost",
        "node-7",
        "INC-2026-01",
        "inc-2026-000",
        "2026-001",
        "überlast",
        "ÜBERLAST",
        "Überlast",
        "berlast",
        "rate_100%",
        "_100",
        "%",
        "50_p",
        "q",
        "Q",
        "x",
        "zz",
        "qq",
        "e",
        "z",
        "7",
        "IN",
        "_",
        "Ü",
        "ü",
        "\n",
        "newalert",
        "secondalert",
        "brand new",
        "Error rate above",
        "Routine check 1",
        "routine",
        "Error rate above 5% on checkout",
        "Rate\nNew",
        "HighErrorRate\nNewAlertJoined",
        "\"quoted\" OR x",
        "db",
        "DB",
        "dB",
        "xy",
        "XY",
        "öd",
        "y ",
        "\"q",
        "k ",
        "ck",
        "In",
        "iN",
        "i",
        "c-",
        "C-",
        "-2",
        "26",
        "wj",
        "WJ",
        "jp",
    ];
    let mut filters: Vec<IncidentFilter> = terms
        .iter()
        .map(|q| IncidentFilter {
            search: Some(q.to_string()),
            ..Default::default()
        })
        .collect();
    filters.extend([
        IncidentFilter {
            search: Some("routine".into()),
            status: Some(incidentd::incident::Status::Resolved),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("routine".into()),
            status: Some(incidentd::incident::Status::Open),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("routine".into()),
            service: Some("svc-101".into()),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("check 4".into()),
            fired_from: Some(t("2026-11-20T07:00:00Z")),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("e".into()),
            severity: Some("critical".into()),
            ..Default::default()
        },
        // Terms too short for the trigram index, with the other filters.
        IncidentFilter {
            search: Some("q".into()),
            status: Some(incidentd::incident::Status::Open),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("7".into()),
            status: Some(incidentd::incident::Status::Resolved),
            fired_from: Some(t("2026-11-20T03:00:00Z")),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("ü".into()),
            service: Some("svc-67".into()),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("Ü".into()),
            service: Some("svc-67".into()),
            ..Default::default()
        },
        IncidentFilter {
            search: Some("1".into()),
            severity: Some("warning".into()),
            fired_until: Some(t("2026-11-20T05:00:00Z")),
            ..Default::default()
        },
    ]);
    let mut log = Vec::new();
    for filter in &filters {
        let expected = scan(&all, filter);
        let whole = search_pages(&store, filter, 50).await;
        assert_eq!(whole, expected, "{filter:?}, 50 a page");
        let paged = search_pages(&store, filter, 7).await;
        assert_eq!(paged, expected, "{filter:?}, 7 a page");
        log.push(format!("{filter:?}: {} found: {whole:?}", whole.len()));
    }
    // The terms found what they are there for (the comparison is not between empty lists).
    let found = |q: &str| {
        log.iter()
            .find(|l| l.contains(&format!("search: Some({q:?})")))
            .map(|l| !l.contains(": 0 found"))
            .unwrap()
    };
    for q in [
        "higherror",
        "node-7",
        "INC-2026-01",
        "Überlast",
        "newalert",
        "secondalert",
    ] {
        assert!(found(q), "{q} finds something");
    }
    // Related incidents (a draft's), against testing every earlier incident: the same key or
    // a shared alert name, newest first, at most 5.
    let number = |id: &str| id.rsplit('-').next().unwrap().parse::<u32>().unwrap();
    let mut related_log = Vec::new();
    for x in &all {
        let names: Vec<&str> = x.alerts.iter().map(|a| a.alertname.as_str()).collect();
        let mut expected: Vec<&incidentd::incident::Incident> = all
            .iter()
            .filter(|y| number(&y.id) < number(&x.id))
            .filter(|y| {
                y.key == x.key
                    || y.alerts
                        .iter()
                        .any(|a| names.contains(&a.alertname.as_str()))
            })
            .collect();
        expected.sort_by_key(|y| std::cmp::Reverse(number(&y.id)));
        let expected: Vec<&str> = expected.iter().take(5).map(|y| y.id.as_str()).collect();
        let inputs = store.draft_inputs(&x.id).await.unwrap().unwrap();
        let related: Vec<&str> = inputs
            .related
            .iter()
            .map(|r| r.incident.id.as_str())
            .collect();
        assert_eq!(related, expected, "related to {}", x.id);
        if names.contains(&"RareTwin") && number(&x.id) > 1 {
            assert_eq!(related.len(), 1, "the twin, past the walk");
        }
        related_log.push(format!("related to {}: {related:?}", x.id));
    }
    for q in [
        "Ü", "_", "7", "IN", "In", "q", "db", "xy", "ck", "k ", "26", "wj", "WJ", "jp",
    ] {
        assert!(found(q), "{q} finds something");
    }
    // In every id, but not at its start: an id matches by its start.
    for q in [
        "überlast",
        "Rate\nNew",
        "zz",
        "2026-001",
        "z",
        "ü",
        "\n",
        "c-",
        "-2",
    ] {
        assert!(!found(q), "{q} finds nothing");
    }
    store.close().await;
    log.extend(related_log);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_what_testing_every_incident_finds_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(dir.path())
        .unwrap()
        .with_followups(Arc::new(Rules::default()), planner());
    let from_sqlite = searches(sqlite).await;
    let Some(cluster) = pg::shared_or_skip("search") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("search"));
    let from_postgres = searches(open_pg(&url).await).await;
    assert_same(&from_sqlite, &from_postgres);
}

/// The report over `[since, until)` as a store that has kept nothing reads it.
async fn fresh_report(url: &str, since: &str, until: &str) -> Value {
    let fresh = open_pg(url).await;
    let r = report(&fresh, since, until, None).await;
    fresh.close().await;
    r
}

/// Each replica keeps its reports' blocks (`store::report_cache`) and sees the other's
/// writes: after new incidents in several blocks, acknowledgements, resolutions and pruning,
/// through either replica, each replica's report equals one read by a store that kept
/// nothing, for a range of whole blocks and one that cuts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_s_kept_report_blocks_follow_the_other_replica_s_writes() {
    let Some(cluster) = pg::shared_or_skip("replicas_reports") else {
        return;
    };
    let url = tokio::task::block_in_place(|| cluster.create_database("replicas_reports"));
    let (a, b) = (open_pg(&url).await, open_pg(&url).await);
    let base = t("2026-11-01T00:00:00Z");
    let ranges = [
        ("2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z"),
        ("2026-11-02T05:17:00Z", "2026-11-05T13:02:30Z"),
    ];
    let mut compared = 0;
    for round in 0..6i64 {
        let (writer, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // New incidents 7 hours apart: each round's fall in three blocks of ~19 hours.
        for k in 0..6 {
            let starts = base + Duration::hours(7 * (round * 6 + k));
            let body = variant(
                &format!("{round:02}{k:014}"),
                &starts.to_rfc3339(),
                &format!("svc-{round}-{k}"),
            );
            ingest(writer, &body, starts + Duration::seconds(10))
                .await
                .expect("accepted");
        }
        let mut open: Vec<String> = writer
            .list_incidents(ListFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .incidents
            .into_iter()
            .filter(|i| i.status == Status::Open)
            .map(|i| i.id)
            .collect();
        open.sort();
        let at = base + Duration::days(20) + Duration::minutes(round);
        // The oldest open incident acknowledged by one replica, the next resolved by the other.
        writer
            .act(&open[0], "alice", Action::Acknowledge, at)
            .await
            .unwrap();
        other
            .act(&open[1], "bob", Action::Resolve, at)
            .await
            .unwrap();
        if round == 4 {
            // The resolved ones go: blocks lose incidents.
            let pruned = other
                .prune(at, Some(at + Duration::hours(1)))
                .await
                .unwrap();
            assert_eq!(pruned.incidents, 5, "{pruned:?}");
        }
        for (since, until) in ranges {
            let truth = fresh_report(&url, since, until).await;
            for (name, replica) in [("a", &a), ("b", &b)] {
                let kept = report(replica, since, until, None).await;
                assert_eq!(
                    kept, truth,
                    "round {round}, replica {name}, {since}..{until}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 24);
    let totals = report(&a, ranges[0].0, ranges[0].1, None).await;
    assert_eq!(totals["total"]["incidents"], json!(36 - 5), "{totals:#}");
    a.close().await;
    b.close().await;
}
