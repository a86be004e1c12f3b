//! Who may see what: everything (root, the collector's user, the admin group), an account
//! manager's accounts, or one user's own jobs; and how a job reads to a caller who may not see
//! another user's environment values and argv.

use crate::questions::query;

/// Whose jobs a ledger command may see: everything (root, the collector's user, the admin
/// group), or one user's own jobs (sacct's PrivateData=jobs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Own(Owner),
}

/// A caller who sees only their own jobs: the uid the kernel gave for them (`SO_PEERCRED`), their
/// name (for messages only: a name is never matched, since `-u 1002` reads as a uid), and the
/// clusters whose uids are this host's (`[collector] user_clusters`; empty: every cluster).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub uid: u32,
    pub name: String,
    pub clusters: Vec<String>,
    /// The account patterns this caller manages (`[access.managers]`); empty for a plain user.
    /// A manager also sees every job of those accounts, but never the environment values or
    /// argv of other users' jobs.
    #[serde(default)]
    pub manages: Vec<String>,
}

impl Owner {
    /// Whether a recorded job (its uid and cluster) is this caller's.
    pub fn owns(&self, uid: Option<i64>, cluster: &str) -> bool {
        uid == Some(i64::from(self.uid)) && self.on_my_clusters(cluster)
    }

    fn on_my_clusters(&self, cluster: &str) -> bool {
        self.clusters.is_empty() || self.clusters.iter().any(|c| c == cluster)
    }

    /// The manager's view of the ledger, or `None` for a plain user.
    pub fn managed(&self) -> Option<crate::questions::query::filter::Managed> {
        (!self.manages.is_empty())
            .then(|| crate::questions::query::filter::Managed { uid: self.uid, accounts: self.manages.clone() })
    }

    /// Whether a recorded job is visible to this caller at all: their own, or (for a manager)
    /// of an account they manage. The one rule `query job` applies; the filters of every other
    /// command say the same in SQL ([`crate::questions::query::filter::Filter::managed`]).
    pub fn sees(&self, uid: Option<i64>, account: Option<&str>, cluster: &str) -> bool {
        match self.managed() {
            Some(m) => m.sees(uid, account) && self.on_my_clusters(cluster),
            None => self.owns(uid, cluster),
        }
    }
}

/// Whose jobs a report covers, in words for its header.
pub fn report_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "every recorded job".into(),
        Scope::Own(me) if !me.manages.is_empty() => {
            format!("accounts {} (managed by {}) and {}'s own jobs", me.manages.join(", "), me.name, me.name)
        }
        Scope::Own(me) => format!("{}'s jobs", me.name),
    }
}

/// What stands for another user's environment values and argv in a manager's answers.
pub const HIDDEN: &str = "<hidden>";

/// Whether `scope` may see what the user of a job they can see recorded themselves: their
/// environment values and argv. Only admins and the job's own user may; a manager may not.
pub fn sees_private(scope: &Scope, uid: Option<i64>) -> bool {
    match scope {
        Scope::All => true,
        Scope::Own(me) => uid == Some(i64::from(me.uid)),
    }
}

/// Another user's argv, as a manager sees it.
pub fn hide_argv(argv: &mut Vec<String>) {
    if !argv.is_empty() {
        *argv = vec![HIDDEN.to_string()];
    }
}

/// One job as `scope` may see it: for a manager, another user's environment values and argv
/// are [`HIDDEN`] (the variables' names stay: which are set is the team's business).
pub fn private_hidden(d: &mut query::JobDetail, scope: &Scope) {
    if sees_private(scope, d.job.uid) {
        return;
    }
    for s in &mut d.steps {
        hide_argv(&mut s.argv);
    }
    for env in d.environments.values_mut() {
        for v in env.values_mut() {
            *v = HIDDEN.to_string();
        }
    }
}
