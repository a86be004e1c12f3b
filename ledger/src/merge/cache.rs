//! The ids the merge interned, kept in memory between batches and transactions of one writer.
//!
//! A node record names the same host, attribute set, environment, argv, modules… as thousands
//! before it; looking each up in SQLite (a cached statement, hot pages, plus the `retiring`
//! probe of [`crate::store`]) was a fifth of the writer's time. The cache answers those from
//! memory, and stays exactly as right as the lookups it replaces:
//!
//! - a batch rolled back to its savepoint takes the ids it added out of the cache
//!   ([`Cache::rollback_batch`]); a transaction that fails empties it;
//! - another connection's commit (a prune deleting unreferenced rows, above all) empties it:
//!   SQLite's `PRAGMA data_version` changes exactly then, and is read after `BEGIN IMMEDIATE`,
//!   when no other writer can commit until ours ends;
//! - a hit still takes the row off the prune's `retiring` list when that list had rows at the
//!   transaction's start (it cannot gain any during our transaction: we hold the write lock).
//!
//! It is bounded ([`MAX_ENTRIES`]): when full it is emptied at the start of a transaction.
//!
//! It also holds the transaction's rollup changes until the commit ([`Cache::flush_rollups`]),
//! with the same savepoint rules: a batch rolled back drops its own.

use crate::store::{self, Attrs};
use rusqlite::Connection;
use rustc_hash::{FxHashMap, FxHasher};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Entries at most (a few MB with environments of fifty variables); then it starts again.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Host(String),
    String(String),
    Module(String, String),
    ModuleList(String),
    ModuleSet(String),
}

impl Key {
    /// The `retiring.kind` of the rows the prune may sweep; None for hosts and modules, which stay.
    fn retiring_kind(&self) -> Option<&'static str> {
        match self {
            Key::Host(_) | Key::Module(..) => None,
            Key::String(_) => Some("strings"),
            Key::ModuleList(_) => Some("module_lists"),
            Key::ModuleSet(_) => Some("module_sets"),
        }
    }
}

/// Values by a hash of their contents: each bucket the values of that hash, with their ids.
type Buckets<T> = FxHashMap<u64, Vec<(T, i64)>>;

/// Interned ids of one writer connection (see the module documentation).
#[derive(Debug)]
pub struct Cache {
    ids: HashMap<Key, i64>,
    /// Environments and attribute sets by a hash of their contents, then compared in full: a
    /// hit neither copies nor serializes them (that cost as much as the lookups it saves).
    envs: Buckets<BTreeMap<String, String>>,
    attrs: Buckets<OwnedAttrs>,
    /// What was looked up (and maybe added) since the current batch's savepoint.
    added: Vec<Added>,
    /// `PRAGMA data_version` when the cache was last known to match the database.
    data_version: Option<i64>,
    /// Whether hits must still be taken off `retiring` (unknown counts as yes).
    retiring: bool,
    /// The rollups' changes of the current batch, and of the batches released before it in
    /// this transaction: written once, just before the commit ([`Cache::flush_rollups`]).
    pub(crate) rollups: crate::rollup::Deltas,
    released_rollups: crate::rollup::Deltas,
    /// Hits and misses, for the tests and the curious.
    pub hits: u64,
    pub misses: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            ids: HashMap::new(),
            envs: FxHashMap::default(),
            attrs: FxHashMap::default(),
            added: Vec::new(),
            data_version: None,
            retiring: true,
            rollups: Default::default(),
            released_rollups: Default::default(),
            hits: 0,
            misses: 0,
        }
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the cache (always safe: the next lookups go to SQLite).
    pub fn clear(&mut self) {
        self.ids.clear();
        self.envs.clear();
        self.attrs.clear();
        self.added.clear();
        self.data_version = None;
        self.retiring = true;
        self.rollups.clear();
        self.released_rollups.clear();
    }

    /// Writes the transaction's rollup changes: call it just before COMMIT.
    pub fn flush_rollups(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        self.released_rollups.absorb(&mut self.rollups);
        self.released_rollups.flush(conn)
    }

    /// Called right after `BEGIN IMMEDIATE`: forgets everything if another connection committed
    /// since, and notes whether the prune's `retiring` list has rows.
    pub fn begin(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) || self.len() > MAX_ENTRIES {
            self.clear();
            self.data_version = Some(version);
        }
        self.added.clear();
        if !(self.rollups.is_empty() && self.released_rollups.is_empty()) {
            // A transaction ended without flush_rollups: a bug, whose changes are gone with it.
            log::error!("rollup changes of an earlier transaction were never written; dropped");
            self.rollups.clear();
            self.released_rollups.clear();
        }
        self.retiring = match conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM retiring)") {
            Ok(mut st) => st.query_row([], |r| r.get(0))?,
            // A ledger before the version that adds it: nothing to take off.
            Err(e) if e.to_string().contains("no such table: retiring") => false,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    /// The current batch was released: its ids stay (they commit with the transaction or the
    /// whole cache is emptied).
    pub fn release_batch(&mut self) {
        self.added.clear();
        self.released_rollups.absorb(&mut self.rollups);
    }

    /// The current batch was rolled back to its savepoint: the ids it added went with it.
    pub fn rollback_batch(&mut self) {
        self.rollups.clear();
        for a in self.added.drain(..) {
            match a {
                Added::Key(k) => {
                    self.ids.remove(&k);
                }
                Added::Env(h, id) => forget(&mut self.envs, h, id),
                Added::Attrs(h, id) => forget(&mut self.attrs, h, id),
            }
        }
    }

    fn len(&self) -> usize {
        self.ids.len() + self.envs.len() + self.attrs.len()
    }

    /// A hit on a row the prune may sweep: take it off `retiring` if the list had rows.
    fn reused(&mut self, conn: &Connection, kind: &str, id: i64) -> rusqlite::Result<i64> {
        self.hits += 1;
        if self.retiring {
            store::reuse(conn, kind, id)?;
        }
        Ok(id)
    }

    /// The id for `key`, from memory or from `lookup` (SQLite's find-or-insert).
    fn get(
        &mut self,
        conn: &Connection,
        key: Key,
        lookup: impl FnOnce(&Connection) -> rusqlite::Result<i64>,
    ) -> rusqlite::Result<i64> {
        if let Some(&id) = self.ids.get(&key) {
            return match key.retiring_kind() {
                Some(kind) => self.reused(conn, kind, id),
                None => {
                    self.hits += 1;
                    Ok(id)
                }
            };
        }
        self.misses += 1;
        let id = lookup(conn)?;
        self.added.push(Added::Key(key.clone()));
        self.ids.insert(key, id);
        Ok(id)
    }

    pub fn host_id(&mut self, conn: &Connection, name: &str) -> rusqlite::Result<i64> {
        self.get(conn, Key::Host(name.to_string()), |c| store::host_id(c, name))
    }

    pub fn string_id(&mut self, conn: &Connection, value: &str) -> rusqlite::Result<i64> {
        self.get(conn, Key::String(value.to_string()), |c| store::string_id(c, value))
    }

    pub fn attrs_id(&mut self, conn: &Connection, a: &Attrs) -> rusqlite::Result<i64> {
        let h = fx(a);
        if let Some(&(_, id)) = self.attrs.get(&h).and_then(|b| b.iter().find(|(o, _)| o.is(a))) {
            return self.reused(conn, "attrs", id);
        }
        self.misses += 1;
        let id = store::attrs_id(conn, a)?;
        self.attrs.entry(h).or_default().push((OwnedAttrs::of(a), id));
        self.added.push(Added::Attrs(h, id));
        Ok(id)
    }

    pub fn env_id(&mut self, conn: &Connection, env: &BTreeMap<String, String>) -> rusqlite::Result<Option<i64>> {
        if env.is_empty() {
            return Ok(None);
        }
        let h = fx(env);
        if let Some(&(_, id)) = self.envs.get(&h).and_then(|b| b.iter().find(|(e, _)| e == env)) {
            return self.reused(conn, "environments", id).map(Some);
        }
        self.misses += 1;
        let id = store::env_id(conn, env)?.expect("a non-empty environment");
        self.envs.entry(h).or_default().push((env.clone(), id));
        self.added.push(Added::Env(h, id));
        Ok(Some(id))
    }

    pub fn module_id(&mut self, conn: &Connection, name: &str, version: &str) -> rusqlite::Result<i64> {
        self.get(conn, Key::Module(name.to_string(), version.to_string()), |c| store::module_id(c, name, version))
    }

    pub fn module_list_id(&mut self, conn: &Connection, list: &store::ModuleList) -> rusqlite::Result<Option<i64>> {
        if list.is_empty() {
            return Ok(None);
        }
        // The key names the modulefiles by path: their `strings` ids come from this cache too.
        let mut key = String::new();
        for (module, file) in list {
            key.push_str(&module.to_string());
            key.push(':');
            key.push_str(file.as_deref().unwrap_or(""));
            key.push('\0');
        }
        let mut with_ids = Vec::with_capacity(list.len());
        for (module, file) in list {
            with_ids.push((*module, file.as_deref().map(|f| self.string_id(conn, f)).transpose()?));
        }
        self.get(conn, Key::ModuleList(key), |c| store::module_list_id_of(c, &with_ids)).map(Some)
    }

    pub fn module_set_id(&mut self, conn: &Connection, modules: &[i64]) -> rusqlite::Result<Option<i64>> {
        if modules.is_empty() {
            return Ok(None);
        }
        let text = modules.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        self.get(conn, Key::ModuleSet(text), |c| store::module_set_id(c, modules).map(|id| id.expect("modules")))
            .map(Some)
    }
}

/// What a batch added to the cache, to take out again if it is rolled back.
#[derive(Debug)]
enum Added {
    Key(Key),
    Env(u64, i64),
    Attrs(u64, i64),
}

fn fx<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = FxHasher::default();
    v.hash(&mut h);
    h.finish()
}

fn forget<T>(map: &mut Buckets<T>, h: u64, id: i64) {
    if let Some(bucket) = map.get_mut(&h) {
        bucket.retain(|(_, i)| *i != id);
        if bucket.is_empty() {
            map.remove(&h);
        }
    }
}

/// An attribute set as the cache keeps it.
#[derive(Debug)]
struct OwnedAttrs {
    ids: [Option<i64>; 2],
    texts: [Option<String>; 7],
}

impl OwnedAttrs {
    fn texts<'a>(a: &Attrs<'a>) -> [Option<&'a str>; 7] {
        [a.user, a.account, a.partition, a.qos, a.job_name, a.work_dir, a.slurm_version]
    }

    fn of(a: &Attrs) -> Self {
        OwnedAttrs { ids: [a.uid, a.gid], texts: Self::texts(a).map(|t| t.map(str::to_string)) }
    }

    fn is(&self, a: &Attrs) -> bool {
        self.ids == [a.uid, a.gid] && self.texts.iter().zip(Self::texts(a)).all(|(x, y)| x.as_deref() == y)
    }
}
