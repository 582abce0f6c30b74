//! The statements prepared on one session: each SQL text is parsed by the server once per
//! session, then run by its handle. Used by the store's statements (`tx.rs`), by what a write
//! transaction postpones (`pending.rs`), and kept with each session in the pool (`pool.rs`).

use std::collections::HashMap;

use postgres::Statement;

/// The statements prepared on one session, by SQL text. Kept with the session in the pool and
/// dropped with it, so each statement is parsed once per session instead of once per call (a
/// round trip saved on every statement). The SQL texts are a fixed set, so it stays small.
#[derive(Default)]
pub struct StmtCache(HashMap<String, Statement>);

impl StmtCache {
    /// Statements cached.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The statement for `sql`, prepared on this session the first time it is asked for.
/// (Prepared statements are not transactional: one prepared in a transaction that rolls back
/// stays valid.)
pub(super) fn prepared(
    tx: &mut postgres::Transaction<'_>,
    stmts: &mut StmtCache,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = stmts.0.get(sql) {
        return Ok(s.clone());
    }
    let s = tx.prepare(sql)?;
    stmts.0.insert(sql.to_owned(), s.clone());
    Ok(s)
}
