//! The group of coordinators that share one database (docs/ha.md).
//!
//! Every coordinator registers in the `conductors` table and heartbeats
//! there by the database's clock. A [`HashRing`] per `conductor_group`, over
//! the members that are alive, says which coordinator acts for each node
//! (its owner). This module keeps that view and this coordinator's lease:
//! after a heartbeat that the database took, the coordinator may act on
//! nodes for three quarters of `heartbeat_timeout`; when it cannot renew in
//! that time (database unreachable, network cut) it stops acting, before
//! the others count it as dead and take its nodes over.
//!
//! On SQLite a coordinator is alone: it owns every node and its lease never
//! lapses.

pub mod ring;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub use ring::HashRing;

use crate::config::ConductorConfig;
use crate::db::ConductorRow;
use crate::model::Node;

/// The PostgreSQL channel on which a coordinator asks a node's owner to
/// look at it (payload: `<owner> <node uuid>`).
pub const KICK_CHANNEL: &str = "ingot_kick";
/// The PostgreSQL channel on which members announce that they joined or
/// left (payload: the member's name).
pub const MEMBERS_CHANNEL: &str = "ingot_members";

/// The members as this coordinator last read them, and their rings.
#[derive(Debug, Default)]
pub struct View {
    /// Every registered member, alive or not.
    pub members: Vec<ConductorRow>,
    rings: HashMap<String, HashRing>,
}

impl View {
    fn new(members: Vec<ConductorRow>, exponent: u32) -> Self {
        let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
        for m in members.iter().filter(|m| m.alive) {
            by_group
                .entry(m.conductor_group.clone())
                .or_default()
                .push(m.hostname.clone());
        }
        let rings = by_group
            .into_iter()
            .map(|(g, hosts)| (g, HashRing::new(&hosts, exponent)))
            .collect();
        Self { members, rings }
    }

    /// The names of the alive members.
    pub fn alive(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.hostname.clone())
            .collect()
    }

    /// The owner of the node `uuid` of `group`: `None` when no member of
    /// the group is alive.
    pub fn owner(&self, group: &str, uuid: &str) -> Option<&str> {
        self.rings.get(group)?.owner(uuid)
    }
}

/// What changed with a new view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The set of alive members changed (the rings moved).
    pub moved: bool,
    /// Members that were alive and are not any more.
    pub lost: Vec<String>,
    /// Members that are alive now and were not.
    pub joined: Vec<String>,
}

/// This coordinator's membership: its view of the group and its lease.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    shared: bool,
    config: ConductorConfig,
    view: RwLock<Arc<View>>,
    lease_until: Mutex<Option<Instant>>,
    stopping: std::sync::atomic::AtomicBool,
    /// Woken to refresh the view at once (a member joined or left).
    pub refresh: tokio::sync::Notify,
}

impl Cluster {
    /// The membership of coordinator `name`; `shared` when the database
    /// can have other members (PostgreSQL).
    pub fn new(name: &str, shared: bool, config: ConductorConfig) -> Self {
        Self {
            name: name.to_owned(),
            shared,
            config,
            view: RwLock::new(Arc::new(View::default())),
            lease_until: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            refresh: tokio::sync::Notify::new(),
        }
    }

    /// Whether other coordinators may share the database.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The settings.
    pub fn config(&self) -> &ConductorConfig {
        &self.config
    }

    /// `heartbeat_timeout` in milliseconds.
    pub fn timeout_ms(&self) -> i64 {
        i64::try_from(self.config.heartbeat_timeout.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the view with `members` (as just read) and says what moved.
    pub fn set_view(&self, members: Vec<ConductorRow>) -> Change {
        let new = Arc::new(View::new(members, self.config.hash_partition_exponent));
        let old = {
            let mut g = match self.view.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            std::mem::replace(&mut *g, new.clone())
        };
        let (before, after) = (old.alive(), new.alive());
        Change {
            moved: before != after,
            lost: before.difference(&after).cloned().collect(),
            joined: after.difference(&before).cloned().collect(),
        }
    }

    /// The coordinator that acts for `node`: this one when alone; `None`
    /// when no member of the node's group is alive.
    pub fn owner(&self, node: &Node) -> Option<String> {
        if !self.shared {
            return Some(self.name.clone());
        }
        self.view()
            .owner(&node.conductor_group, &node.uuid)
            .map(str::to_owned)
    }

    /// Whether this coordinator acts for `node`.
    pub fn owns(&self, node: &Node) -> bool {
        if !self.shared {
            return true;
        }
        self.view().owner(&node.conductor_group, &node.uuid) == Some(self.name.as_str())
    }

    /// Records a heartbeat the database took; `sent` is when it was sent.
    pub fn renewed(&self, sent: Instant) {
        let lease = Duration::from_millis(self.config.heartbeat_timeout.saturating_mul(750));
        let mut g = match self.lease_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some(sent + lease);
    }

    /// Whether this coordinator may act on nodes now: alone, or with a
    /// lease that has not run out, and not stopping.
    pub fn can_act(&self) -> bool {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        if !self.shared {
            return true;
        }
        let g = match self.lease_until.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.is_some_and(|until| Instant::now() < until)
    }

    /// Stops acting on nodes from now on (a graceful stop hands them over).
    pub fn stop_acting(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The URLs agents may call, of the alive members of `group`: `first`
    /// (the serving member's) first, then the others' registered ones.
    pub fn agent_urls(&self, group: &str, first: &str) -> Vec<String> {
        let mut urls = vec![first.to_owned()];
        if self.shared {
            for m in self.view().members.iter() {
                if m.alive
                    && m.conductor_group == group
                    && m.hostname != self.name
                    && !m.api_url.is_empty()
                    && !urls.contains(&m.api_url)
                {
                    urls.push(m.api_url.clone());
                }
            }
        }
        urls
    }

    /// How often the membership loop runs: every second (it heartbeats
    /// every `heartbeat_interval` and reads the members at every tick, so a
    /// death is noticed within a second of `heartbeat_timeout`).
    pub fn tick(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, group: &str, alive: bool) -> ConductorRow {
        ConductorRow {
            hostname: name.into(),
            conductor_group: group.into(),
            api_url: format!("http://{name}:6385"),
            alive,
            heartbeat_age_ms: 0,
            drivers: vec![],
        }
    }

    fn node(uuid: &str, group: &str) -> Node {
        Node {
            uuid: uuid.into(),
            conductor_group: group.into(),
            ..Node::default()
        }
    }

    #[test]
    fn alone_a_coordinator_owns_everything_and_always_acts() {
        let c = Cluster::new("me", false, ConductorConfig::default());
        assert!(c.owns(&node("n1", "rack-9")));
        assert!(c.can_act());
        assert_eq!(c.agent_urls("", "http://a"), vec!["http://a".to_string()]);
    }

    #[test]
    fn owners_come_from_the_alive_members_of_the_nodes_group() {
        let c = Cluster::new("a", true, ConductorConfig::default());
        let ch = c.set_view(vec![
            member("a", "", true),
            member("b", "", true),
            member("c", "", false),
            member("r1", "rack1", true),
        ]);
        assert!(ch.moved);
        assert_eq!(ch.joined, vec!["a", "b", "r1"]);
        for i in 0..200 {
            let n = node(&format!("node-{i}"), "");
            let o = c.owner(&n).unwrap();
            assert!(o == "a" || o == "b", "{o}");
            assert_eq!(c.owner(&node(&n.uuid, "rack1")).as_deref(), Some("r1"));
            assert_eq!(c.owner(&node(&n.uuid, "nobody")), None);
        }
        let ch = c.set_view(vec![member("a", "", true), member("b", "", false)]);
        assert_eq!(ch.lost, vec!["b", "r1"]);
        assert!(c.owns(&node("x", "")));
        assert_eq!(
            c.agent_urls("", "http://self"),
            vec!["http://self".to_string()]
        );
    }

    #[test]
    fn the_lease_runs_for_three_quarters_of_the_timeout() {
        let cfg = ConductorConfig {
            heartbeat_timeout: 4,
            ..ConductorConfig::default()
        };
        let c = Cluster::new("a", true, cfg);
        assert!(!c.can_act(), "no heartbeat yet");
        c.renewed(Instant::now());
        assert!(c.can_act());
        c.renewed(Instant::now() - Duration::from_millis(3_100));
        assert!(!c.can_act(), "3 s of a 4 s timeout have passed");
        c.renewed(Instant::now());
        c.stop_acting();
        assert!(!c.can_act());
    }
}
