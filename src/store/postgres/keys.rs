//! Which of this replica's writers (`db.rs`) holds or awaits each advisory lock, so that work
//! for a busy key goes to that writer instead of a second writer of the same replica queueing
//! for the key in turn (with two replicas, the benchmark's one key was otherwise awaited by up
//! to eight writers, each committing a small batch).
//!
//! A writer's claims belong to one batch ([`Keys::batch`]): it claims a lock when its
//! transaction waits for it or took it ([`Claims::claim`]), and every claim ends with the batch
//! ([`Claims::end`]), whatever became of the lock meanwhile. An operation of another writer
//! that needs a lock claimed by that batch is not asked for at PostgreSQL: it is handed to the
//! batch ([`Claims::hand_off`]), which adds it to its transaction as soon as it can
//! ([`Claims::take`]); what it did not take when it ends is returned to its writer, which runs
//! it in its next transaction. So handed work always reaches a writer that is running a batch
//! or about to, even when the writer panics (the claims end on drop, and the work handed to
//! them is dropped, so that its callers get an error rather than wait).
//!
//! A claim is only a hint for where work goes; the locks are PostgreSQL's. It may outlive its
//! lock until the batch ends (an operation that took the lock was rolled back, or the whole
//! transaction was and is run again): work handed meanwhile then tries the lock in the
//! claiming writer's transaction, and a busy lock defers it to that writer's next one, whose
//! first operation waits for it. A lock may also be taken without a claim (two writers raced
//! for an unclaimed key): the loser waits for it at PostgreSQL, as without claims.

use std::collections::HashMap;
use std::sync::Mutex;

/// Claims by lock name, each with the work handed to its writer; `T` is the engine's operation.
pub(super) struct Keys<T> {
    claims: Mutex<HashMap<String, Claim<T>>>,
}

struct Claim<T> {
    writer: usize,
    handed: Vec<T>,
}

/// What a statement taking an advisory lock asks about it (`tx.rs`).
pub(super) trait Claiming {
    /// Whether another writer of this replica claims `name`.
    fn others_claim(&self, name: &str) -> bool;
    /// Claim `name` for this batch unless another writer does; whether this batch claims it.
    fn claim(&self, name: &str) -> bool;
}

impl<T> Keys<T> {
    pub fn new() -> Self {
        Keys {
            claims: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claim<T>>> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of one batch of `writer` (a writer runs one batch at a time).
    pub fn batch(&self, writer: usize) -> Claims<'_, T> {
        Claims { keys: self, writer }
    }

    /// End `writer`'s claims; returns the work handed to them that was not taken.
    fn release(&self, writer: usize) -> Vec<T> {
        let mut claims = self.lock();
        let mut left = Vec::new();
        claims.retain(|_, c| {
            if c.writer == writer {
                left.append(&mut c.handed);
                false
            } else {
                true
            }
        });
        left
    }
}

/// One batch's claims; they end with it.
pub(super) struct Claims<'k, T> {
    keys: &'k Keys<T>,
    writer: usize,
}

impl<T> Claims<'_, T> {
    /// Give `item`, blocked on `name`, to the batch of the other writer that claims `name`;
    /// returns it when there is none.
    pub fn hand_off(&self, name: &str, item: T) -> Result<(), T> {
        match self.keys.lock().get_mut(name) {
            Some(c) if c.writer != self.writer => {
                c.handed.push(item);
                Ok(())
            }
            _ => Err(item),
        }
    }

    /// Move work handed to this batch into it, up to `max` items in all.
    pub fn take(&self, batch: &mut Vec<T>, max: usize) {
        let mut claims = self.keys.lock();
        for c in claims.values_mut().filter(|c| c.writer == self.writer) {
            let room = max.saturating_sub(batch.len());
            if room == 0 {
                return;
            }
            let n = room.min(c.handed.len());
            batch.extend(c.handed.drain(..n));
        }
    }

    /// The batch ended (committed or failed for good): its claims end; returns the work
    /// handed to it that it did not take, for the writer's next batch.
    pub fn end(self) -> Vec<T> {
        let left = self.keys.release(self.writer);
        std::mem::forget(self);
        left
    }
}

impl<T> Claiming for Claims<'_, T> {
    fn others_claim(&self, name: &str) -> bool {
        self.keys
            .lock()
            .get(name)
            .is_some_and(|c| c.writer != self.writer)
    }

    fn claim(&self, name: &str) -> bool {
        let mut claims = self.keys.lock();
        let c = claims.entry(name.to_string()).or_insert_with(|| Claim {
            writer: self.writer,
            handed: Vec::new(),
        });
        c.writer == self.writer
    }
}

impl<T> Drop for Claims<'_, T> {
    /// Only when the batch did not end ([`Claims::end`]): its writer panicked. The work
    /// handed to it is dropped, and its callers get an error.
    fn drop(&mut self) {
        drop(self.keys.release(self.writer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_for_a_claimed_key_goes_to_its_writer_and_comes_back_when_its_batch_ends() {
        let keys = Keys::new();
        let (zero, one) = (keys.batch(0), keys.batch(1));
        assert!(!one.others_claim("k"));
        assert!(zero.claim("k"));
        assert!(zero.claim("k"));
        assert!(!zero.others_claim("k"));
        assert!(one.others_claim("k"));
        assert!(!one.claim("k"));
        // The claiming writer keeps its own work; another writer's goes to it.
        assert_eq!(zero.hand_off("k", 1), Err(1));
        assert_eq!(one.hand_off("k", 2), Ok(()));
        assert_eq!(one.hand_off("k", 3), Ok(()));
        assert_eq!(one.hand_off("other", 4), Err(4));
        let mut batch = vec![0];
        zero.take(&mut batch, 2);
        assert_eq!(batch, vec![0, 2]);
        one.take(&mut batch, 10);
        assert_eq!(batch, vec![0, 2]);
        assert_eq!(zero.end(), vec![3]);
        // Ended: the other writer may claim it, and nothing is handed to the old one.
        assert_eq!(one.hand_off("k", 5), Err(5));
        assert!(!one.others_claim("k"));
        assert!(one.claim("k"));
        assert_eq!(one.end(), Vec::<i32>::new());
    }

    #[test]
    fn a_batch_dropped_without_ending_releases_its_claims_and_drops_the_work_handed_to_it() {
        let keys = Keys::new();
        let handed = std::sync::Arc::new(());
        {
            let zero = keys.batch(0);
            assert!(zero.claim("k"));
            assert!(keys.batch(1).hand_off("k", handed.clone()).is_ok());
            assert_eq!(std::sync::Arc::strong_count(&handed), 2);
            // As when its writer panics.
        }
        assert_eq!(std::sync::Arc::strong_count(&handed), 1);
        let one = keys.batch(1);
        assert!(!one.others_claim("k"));
        assert!(one.claim("k"));
        assert!(one.end().is_empty());
    }
}
