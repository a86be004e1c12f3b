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

use crate::store::{self, Attrs};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};

/// Entries at most (a few MB with environments of fifty variables); then it starts again.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Host(String),
    String(String),
    Attrs([Option<String>; 7], [Option<i64>; 2]),
    Env(BTreeMap<String, String>),
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
            Key::Attrs(..) => Some("attrs"),
            Key::Env(_) => Some("environments"),
            Key::ModuleList(_) => Some("module_lists"),
            Key::ModuleSet(_) => Some("module_sets"),
        }
    }
}

/// Interned ids of one writer connection (see the module documentation).
#[derive(Debug)]
pub struct Cache {
    ids: HashMap<Key, i64>,
    /// Keys looked up (and maybe added) since the current batch's savepoint.
    added: Vec<Key>,
    /// `PRAGMA data_version` when the cache was last known to match the database.
    data_version: Option<i64>,
    /// Whether hits must still be taken off `retiring` (unknown counts as yes).
    retiring: bool,
    /// Hits and misses, for the tests and the curious.
    pub hits: u64,
    pub misses: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { ids: HashMap::new(), added: Vec::new(), data_version: None, retiring: true, hits: 0, misses: 0 }
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the cache (always safe: the next lookups go to SQLite).
    pub fn clear(&mut self) {
        self.ids.clear();
        self.added.clear();
        self.data_version = None;
        self.retiring = true;
    }

    /// Called right after `BEGIN IMMEDIATE`: forgets everything if another connection committed
    /// since, and notes whether the prune's `retiring` list has rows.
    pub fn begin(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) || self.ids.len() > MAX_ENTRIES {
            self.clear();
            self.data_version = Some(version);
        }
        self.added.clear();
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
    }

    /// The current batch was rolled back to its savepoint: the ids it added went with it.
    pub fn rollback_batch(&mut self) {
        for k in self.added.drain(..) {
            self.ids.remove(&k);
        }
    }

    /// The id for `key`, from memory or from `lookup` (SQLite's find-or-insert).
    fn get(
        &mut self,
        conn: &Connection,
        key: Key,
        lookup: impl FnOnce(&Connection) -> rusqlite::Result<i64>,
    ) -> rusqlite::Result<i64> {
        if let Some(&id) = self.ids.get(&key) {
            self.hits += 1;
            if self.retiring {
                if let Some(kind) = key.retiring_kind() {
                    store::reuse(conn, kind, id)?;
                }
            }
            return Ok(id);
        }
        self.misses += 1;
        let id = lookup(conn)?;
        self.added.push(key.clone());
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
        let s = |v: Option<&str>| v.map(str::to_string);
        let key = Key::Attrs(
            [s(a.user), s(a.account), s(a.partition), s(a.qos), s(a.job_name), s(a.work_dir), s(a.slurm_version)],
            [a.uid, a.gid],
        );
        self.get(conn, key, |c| store::attrs_id(c, a))
    }

    pub fn env_id(&mut self, conn: &Connection, env: &BTreeMap<String, String>) -> rusqlite::Result<Option<i64>> {
        if env.is_empty() {
            return Ok(None);
        }
        self.get(conn, Key::Env(env.clone()), |c| store::env_id(c, env).map(|id| id.expect("a non-empty environment")))
            .map(Some)
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
