//! A small pool of sessions for blocking threads: at most `pool_size` open, handed out one
//! caller at a time, given back on drop, and replaced when broken. (r2d2 would do it with a
//! thread per pool and more to configure; this is the part incidentd needs.)

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use postgres::Client;

use super::statements::StmtCache;
use super::{connect, PgError};
use crate::config::PostgresConfig;

/// The pool. Cheap to clone; connects lazily.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

struct Inner {
    config: PostgresConfig,
    state: Mutex<State>,
    freed: Condvar,
}

/// A session and the statements prepared on it (they live and die with it).
type Session = (Client, StmtCache);

struct State {
    idle: Vec<Session>,
    /// Sessions open or being opened: idle plus handed out plus connecting.
    open: usize,
}

impl Pool {
    /// A pool of at most `config.pool_size` sessions. Nothing is opened until [`Pool::get`].
    pub fn new(config: PostgresConfig) -> Pool {
        Pool(Arc::new(Inner {
            config,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }))
    }

    /// The configuration the pool connects with.
    pub fn config(&self) -> &PostgresConfig {
        &self.0.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session: an idle one that is still open, else a new one while fewer than
    /// `pool_size` are open, else the first one given back. Waits at most the longer of
    /// `connect_timeout` and `statement_timeout` for one to be given back
    /// ([`PgError::PoolTimeout`], transient). Blocks: call from a blocking thread.
    pub fn get(&self) -> Result<PooledClient, PgError> {
        let config = &self.0.config;
        let waited_at = Instant::now();
        let wait = config.connect_timeout.max(config.statement_timeout);
        let mut state = self.lock();
        loop {
            while let Some((client, stmts)) = state.idle.pop() {
                if client.is_closed() {
                    // The server closed it (restart, idle timeout): drop it, open another.
                    state.open -= 1;
                    continue;
                }
                return Ok(self.wrap(client, stmts));
            }
            if state.open < config.pool_size.max(1) {
                state.open += 1;
                drop(state);
                return match connect(config) {
                    Ok(client) => Ok(self.wrap(client, StmtCache::default())),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.0.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let waited = waited_at.elapsed();
            if waited >= wait {
                return Err(PgError::PoolTimeout {
                    size: config.pool_size,
                    waited,
                });
            }
            state = self
                .0
                .freed
                .wait_timeout(state, wait - waited)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn wrap(&self, client: Client, stmts: StmtCache) -> PooledClient {
        PooledClient {
            pool: self.clone(),
            client: Some(client),
            stmts,
        }
    }

    /// Sessions open now (idle and handed out).
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Sessions waiting in the pool.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    fn give_back(&self, client: Client, stmts: StmtCache, discard: bool) {
        let mut state = self.lock();
        if discard || client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push((client, stmts));
        }
        drop(state);
        self.0.freed.notify_one();
    }
}

/// A session taken from the [`Pool`]; given back when dropped (closed ones are replaced).
pub struct PooledClient {
    pool: Pool,
    client: Option<Client>,
    /// The statements prepared on this session, kept with it in the pool.
    stmts: StmtCache,
}

impl PooledClient {
    /// Closes the session instead of giving it back (its state is unknown, e.g. after a
    /// failure in the middle of a protocol exchange).
    pub fn discard(mut self) {
        if let Some(client) = self.client.take() {
            let stmts = std::mem::take(&mut self.stmts);
            self.pool.give_back(client, stmts, true);
        }
    }

    /// The session and its statement cache, borrowed together (a transaction borrows the
    /// session while its statements come from the cache).
    pub fn parts(&mut self) -> (&mut Client, &mut StmtCache) {
        (
            self.client.as_mut().expect("present until dropped"),
            &mut self.stmts,
        )
    }
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let stmts = std::mem::take(&mut self.stmts);
            self.pool.give_back(client, stmts, false);
        }
    }
}
