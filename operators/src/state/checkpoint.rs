//! Checkpoint hooks for operators with state.
//!
//! An operator that keeps state across timestamps (dedup keys, a sink's open shard, a mixture's
//! buffers) registers it in the worker's [`StateRegistry`] under a stable name. The driver saves
//! every registered state when the dataflow is quiescent (all input up to a cut is processed and
//! no later input has been sent) and loads them back, before any input, when a job resumes.
//!
//! A state may save a *delta* (what changed since its last save, like new dedup keys) so that a
//! checkpoint costs what changed, not what is held; the driver keeps the chain of parts and asks
//! for a full save now and then to keep it short. Parts are loaded in the order they were saved.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use wrapflow_operators::state::checkpoint::{Saved, StateRegistry, Stateful};
//!
//! #[derive(Default)]
//! struct Counter(u64);
//! impl Stateful for Counter {
//!     fn save(&mut self, _full: bool) -> anyhow::Result<Saved> {
//!         Ok(Saved { full: true, bytes: self.0.to_le_bytes().to_vec() })
//!     }
//!     fn load(&mut self, part: &[u8]) -> anyhow::Result<()> {
//!         self.0 = u64::from_le_bytes(part.try_into()?);
//!         Ok(())
//!     }
//! }
//!
//! let registry = StateRegistry::default();
//! let c = Rc::new(RefCell::new(Counter(41)));
//! assert_eq!(registry.register("count", c.clone()), "count");
//! let saved = registry.entries()[0].1.borrow_mut().save(true).unwrap();
//! let fresh = Rc::new(RefCell::new(Counter(0)));
//! fresh.borrow_mut().load(&saved.bytes).unwrap();
//! assert_eq!(fresh.borrow().0, 41);
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One saved part of a state.
pub struct Saved {
    /// `true`: the whole state (earlier parts are no longer needed); `false`: a delta.
    pub full: bool,
    pub bytes: Vec<u8>,
}

/// State an operator lets the driver save and restore.
pub trait Stateful {
    /// Saves the state: all of it when `full`, else possibly only what changed since the last save.
    fn save(&mut self, full: bool) -> anyhow::Result<Saved>;
    /// Applies one saved part; parts come in the order they were saved, starting with a full one.
    fn load(&mut self, part: &[u8]) -> anyhow::Result<()>;
}

/// A shared handle to an operator's state.
pub type StateHandle = Rc<RefCell<dyn Stateful>>;

/// The states of one worker's operators, by name, in registration order.
#[derive(Clone, Default)]
pub struct StateRegistry {
    entries: Rc<RefCell<Vec<(String, StateHandle)>>>,
    abandoned: Rc<std::cell::Cell<bool>>,
}

impl std::fmt::Debug for StateRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.entries.borrow().iter().map(|e| e.0.clone()).collect();
        f.debug_struct("StateRegistry").field("states", &names).finish()
    }
}

impl StateRegistry {
    /// Registers a state and returns the name it got: `name`, or `name#2`, ... when taken.
    pub fn register(&self, name: &str, state: StateHandle) -> String {
        let mut entries = self.entries.borrow_mut();
        let mut unique = name.to_string();
        let mut n = 1;
        while entries.iter().any(|e| e.0 == unique) {
            n += 1;
            unique = format!("{name}#{n}");
        }
        entries.push((unique.clone(), state));
        unique
    }

    /// Registered states, in registration order.
    pub fn entries(&self) -> Vec<(String, StateHandle)> {
        self.entries.borrow().clone()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// Marks the dataflow as abandoned: the job stops at its last checkpoint, so stages must not
    /// flush their open state into the output when their input closes.
    pub fn abandon(&self) {
        self.abandoned.set(true);
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.get()
    }
}

/// Encodes a value for a saved part: bincode, compressed with zstd.
pub fn encode<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    let raw = bincode::serialize(value)?;
    Ok(zstd::bulk::compress(&raw, 3)?)
}

/// Decodes a part written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    let raw = zstd::stream::decode_all(bytes)?;
    Ok(bincode::deserialize(&raw)?)
}

/// Crash testing (feature `failpoints`): `WRAPFLOW_FAILPOINT=name:n` aborts the process (as
/// `kill -9` would) the `n`-th time the code passes the point `name`. Without the feature this
/// is nothing at all: the product never reads the variable.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}

/// Crash testing: `WRAPFLOW_FAILPOINT=name:n` aborts the process (as `kill -9` would) the `n`-th
/// time the code passes the point `name`. Unset, this is one relaxed load.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("WRAPFLOW_FAILPOINT").ok()?;
        let (n, k) = v.rsplit_once(':')?;
        Some((n.to_string(), k.parse().ok()?))
    });
    if let Some((n, k)) = target
        && n == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k
    {
        eprintln!("failpoint {name}:{k}: aborting");
        std::process::abort();
    }
}
