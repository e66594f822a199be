//! This coordinator's part in a group that shares one database
//! ([`crate::cluster`], docs/ha.md): its heartbeat and lease, the view of
//! the members and their hash rings, kicks sent to a node's owner, the
//! takeover of nodes whose owner died, and the graceful hand-over at stop.

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{Conductor, ConductorError};
use crate::cluster::{Change, KICK_CHANNEL, MEMBERS_CHANNEL};
use crate::model::Node;

impl Conductor {
    /// The membership of this coordinator.
    pub fn cluster(&self) -> &crate::cluster::Cluster {
        &self.inner.cluster
    }

    /// The URL this coordinator registers for agents to call.
    fn registered_url(&self) -> String {
        self.config()
            .boot
            .api_url
            .clone()
            .unwrap_or_else(|| self.config().api_url())
    }

    /// Registers this coordinator (online, heartbeat now) and reads the group.
    pub(super) async fn join(&self) -> Result<Change, ConductorError> {
        let drivers: Vec<&str> = crate::drivers::HARDWARE_TYPES
            .iter()
            .map(|h| h.name)
            .collect();
        let sent = Instant::now();
        self.db()
            .register_conductor(
                self.name(),
                &self.config().conductor_group,
                &self.registered_url(),
                &drivers,
            )
            .await?;
        self.cluster().renewed(sent);
        if let Err(e) = self.db().notify(MEMBERS_CHANNEL, self.name()).await {
            warn!(error = %e, "announcing this coordinator to the group failed");
        }
        self.refresh_members().await
    }

    /// Records a heartbeat; registers again when the row was marked
    /// offline (or removed) meanwhile.
    async fn beat(&self) -> Result<(), ConductorError> {
        let sent = Instant::now();
        if self.db().conductor_heartbeat(self.name()).await? {
            self.cluster().renewed(sent);
        } else {
            warn!("this coordinator's registration was gone: registering again");
            self.join().await?;
        }
        Ok(())
    }

    /// Reads the members; when the alive ones changed, releases the
    /// reservations of those that died and adopts the nodes this
    /// coordinator owns now.
    pub async fn refresh_members(&self) -> Result<Change, ConductorError> {
        let rows = self
            .db()
            .list_conductors(self.cluster().timeout_ms())
            .await?;
        let before = self.cluster().view();
        let change = self.cluster().set_view(rows);
        if change.moved {
            info!(
                alive = ?self.cluster().view().alive(),
                lost = ?change.lost,
                joined = ?change.joined,
                "the group changed: hash rings rebuilt"
            );
            super::recovery::release_dead_reservations(self).await?;
            self.adopt_after(Some(&before)).await?;
        }
        Ok(change)
    }

    /// Looks at every node this coordinator owns that needs a conductor (a
    /// transient or wait state, a pending power change, an enabled
    /// console): takes over those another coordinator conducted (a new
    /// fencing token), restarts their consoles here, and kicks them.
    /// Returns how many were taken over.
    pub async fn adopt(&self) -> Result<usize, ConductorError> {
        self.adopt_after(None).await
    }

    /// [`Conductor::adopt`]; with the view `before` a change of the group,
    /// the nodes that moved to this coordinator also get a power-state sync
    /// at once (their last one was their previous owner's).
    async fn adopt_after(
        &self,
        before: Option<&crate::cluster::View>,
    ) -> Result<usize, ConductorError> {
        if !self.cluster().can_act() {
            return Ok(0);
        }
        let mut taken = 0;
        let mut moved_here = std::collections::HashSet::new();
        // Every node only when the ring changed and the nodes that moved
        // here get a power sync; otherwise (the periodic sweep, a start)
        // only the rows that need a conductor.
        let first_view = before.is_some_and(|b| b.members.is_empty());
        let sync_moved =
            before.is_some() && !first_view && self.config().power_sync.interval_ms > 0;
        let nodes = if sync_moved {
            self.db().list_nodes().await?
        } else {
            self.db().nodes_needing_conductor().await?
        };
        for node in nodes {
            if !self.cluster().owns(&node) {
                continue;
            }
            if let Some(b) = before {
                if b.owner(&node.conductor_group, &node.uuid) != Some(self.name()) {
                    moved_here.insert(node.uuid.clone());
                }
            }
            if !node.needs_conductor() {
                continue;
            }
            if node.conductor.as_deref() != Some(self.name()) {
                match self.take_over(&node).await {
                    Ok(Some(_)) => taken += 1,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(node = %node.uuid, error = %e, "taking the node over failed");
                        continue;
                    }
                }
            }
            if node.console_enabled {
                self.restore_console(&node).await;
            }
            if node.provision_state.is_transient()
                || node.provision_state.is_wait()
                || node.power_intent.is_some()
            {
                self.kick_local(&node.uuid);
            }
        }
        if taken > 0 {
            info!(nodes = taken, "took over nodes from other coordinators");
        }
        if sync_moved && !moved_here.is_empty() {
            let me = self.clone();
            info!(
                nodes = moved_here.len(),
                "syncing the power state of the nodes that moved here"
            );
            tokio::spawn(async move {
                if let Err(e) = me.sync_adopted(moved_here).await {
                    warn!(error = %e, "power sync of adopted nodes failed");
                }
            });
        }
        Ok(taken)
    }

    /// Makes this coordinator the node's conductor under a new fencing
    /// token, unless a live coordinator holds its reservation (then `None`:
    /// it finishes its step first). The takeover is journalled.
    async fn take_over(&self, node: &Node) -> Result<Option<Node>, ConductorError> {
        let me = self.name().to_owned();
        let alive = self.cluster().view().alive();
        let r = self
            .db()
            .update_node(&node.uuid, |n| {
                if let Some(holder) = n.reservation.as_deref() {
                    if holder != me && alive.contains(holder) {
                        return Err(());
                    }
                    n.reservation = None;
                }
                if n.conductor.as_deref() != Some(me.as_str()) {
                    n.fence = n.fence.saturating_add(1);
                    n.conductor = Some(me.clone());
                }
                Ok(())
            })
            .await;
        let taken = match r {
            Ok(n) => n,
            Err(crate::db::UpdateError::Refused(())) => return Ok(None),
            Err(crate::db::UpdateError::Db(e)) => return Err(e.into()),
        };
        let from = node.conductor.as_deref().unwrap_or("none");
        info!(node = %node.uuid, from, fence = taken.fence, state = %taken.provision_state, "node taken over");
        self.journal_instant(&taken, "takeover", &format!("from {from}"))
            .await;
        Ok(Some(taken))
    }

    /// Journals an instant event (no action runs).
    pub(super) async fn journal_instant(&self, node: &Node, kind: &str, detail: &str) {
        match self
            .db()
            .journal_start(&node.uuid, self.name(), node.fence, kind, detail)
            .await
        {
            Ok(Some(id)) => {
                if let Err(e) = self.db().journal_finish(&id).await {
                    warn!(node = %node.uuid, error = %e, "journalling failed");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(node = %node.uuid, error = %e, "journalling failed"),
        }
    }

    /// Starts the node's console here (after a takeover or a restart)
    /// unless it runs here already or on another alive member; a console
    /// that cannot start is disabled with the reason.
    async fn restore_console(&self, node: &Node) {
        if crate::console::is_fake(node) || self.consoles().info(&node.uuid).await.is_some() {
            return;
        }
        if let Some(host) = crate::console::host_of(node) {
            if host != self.name() && self.cluster().view().alive().contains(host) {
                return;
            }
        }
        crate::console::restore_one(
            self.db(),
            self.consoles(),
            self.config().listen.ip(),
            &self.console_host(),
            self.name(),
            node,
        )
        .await;
    }

    /// The host that names this coordinator in console URLs: its listen
    /// address, or, when that is unspecified, the host of its registered URL.
    pub fn console_host(&self) -> String {
        let ip = self.config().listen.ip();
        if !ip.is_unspecified() {
            return ip.to_string();
        }
        let url = self.registered_url();
        let hostport = url.split_once("://").map_or(url.as_str(), |(_, h)| h);
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        match hostport.rfind(':') {
            Some(i) if !hostport.ends_with(']') => hostport[..i].to_owned(),
            _ => hostport.to_owned(),
        }
    }

    /// Asks the node's owner to look at it: this coordinator's worker, or
    /// the owner's through PostgreSQL's NOTIFY.
    pub fn kick(&self, node: &Node) {
        match self.cluster().owner(node) {
            Some(owner) if owner == self.name() => self.kick_local(&node.uuid),
            Some(owner) => {
                let db = self.db().clone();
                let payload = format!("{owner} {}", node.uuid);
                debug!(node = %node.uuid, %owner, "waking the node's owner");
                tokio::spawn(async move {
                    if let Err(e) = db.notify(KICK_CHANNEL, &payload).await {
                        warn!(error = %e, "waking a node's owner failed");
                    }
                });
            }
            None => warn!(
                node = %node.uuid,
                group = %node.conductor_group,
                "no alive coordinator in the node's conductor group"
            ),
        }
    }

    /// Asks coordinator `member` to look at the node (its console runs there).
    pub fn wake(&self, member: &str, uuid: &str) {
        if member == self.name() {
            self.kick_local(uuid);
            return;
        }
        let db = self.db().clone();
        let payload = format!("{member} {uuid}");
        tokio::spawn(async move {
            if let Err(e) = db.notify(KICK_CHANNEL, &payload).await {
                warn!(error = %e, "waking a coordinator failed");
            }
        });
    }

    /// Stops a console that runs here for a node whose console was
    /// disabled, or that another member now runs.
    pub(super) async fn sync_console(&self, node: &Node) {
        if self.consoles().info(&node.uuid).await.is_none() {
            return;
        }
        let moved = crate::console::host_of(node).is_some_and(|h| h != self.name());
        if !node.console_enabled || moved {
            info!(node = %node.uuid, "stopping a console that no longer runs here");
            self.consoles().stop(&node.uuid).await;
        }
    }

    /// The membership loop: heartbeat every `heartbeat_interval`, read the
    /// members every tick (at once when a member announces itself) and
    /// rebuild the rings when they changed, and look for nodes to adopt
    /// every `hash_ring_reset_interval`.
    pub(super) fn spawn_membership(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let cfg = me.cluster().config().clone();
            let beat_every = Duration::from_secs(cfg.heartbeat_interval.max(1));
            let sweep_every = Duration::from_secs(cfg.hash_ring_reset_interval.max(1));
            let mut last_beat = Instant::now();
            let mut last_sweep = Instant::now();
            loop {
                let woken = tokio::select! {
                    () = tokio::time::sleep(me.cluster().tick()) => false,
                    () = me.cluster().refresh.notified() => true,
                };
                if me.inner.draining.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if last_beat.elapsed() >= beat_every {
                    // A failed heartbeat is retried at the next tick, not
                    // after a whole interval: the lease is running out.
                    match me.beat().await {
                        Ok(()) => last_beat = Instant::now(),
                        Err(e) => warn!(error = %e, "coordinator heartbeat failed"),
                    }
                }
                // The members are read at every tick (a small table): a
                // death is noticed within a second of its timeout.
                match me.refresh_members().await {
                    Ok(c) if c.moved => last_sweep = Instant::now(),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reading the group failed"),
                }
                // Every hash_ring_reset_interval, look for orphans as well
                // (a wake-up that reached nobody, a reservation that was busy).
                if me.cluster().shared() && (woken || last_sweep.elapsed() >= sweep_every) {
                    last_sweep = Instant::now();
                    if let Err(e) = me.adopt().await {
                        warn!(error = %e, "adopting nodes failed");
                    }
                }
            }
        })
    }

    /// Listens for kicks and membership changes (PostgreSQL only).
    pub(super) fn spawn_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.cluster().shared() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match me.listen().await {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(error = %e, "listening for the group's notifications failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }))
    }

    async fn listen(&self) -> Result<(), sqlx::Error> {
        let mut l = sqlx::postgres::PgListener::connect(&self.config().database).await?;
        l.listen_all([KICK_CHANNEL, MEMBERS_CHANNEL]).await?;
        // Anything missed while not listening.
        self.cluster().refresh.notify_one();
        loop {
            let n = l.recv().await?;
            if self
                .inner
                .draining
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Ok(());
            }
            match n.channel() {
                KICK_CHANNEL => {
                    if let Some((owner, uuid)) = n.payload().split_once(' ') {
                        if owner == self.name() {
                            self.kick_local(uuid);
                        }
                    }
                }
                _ => {
                    if n.payload() != self.name() {
                        self.cluster().refresh.notify_one();
                    }
                }
            }
        }
    }

    /// The graceful stop: no new work, the running steps finish (at most
    /// `grace`), then this coordinator stops acting, releases what it holds,
    /// goes offline and tells the group, whose members adopt its nodes at once.
    pub async fn leave(&self, grace: Duration) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let deadline = Instant::now() + grace;
        while self.busy() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.busy() {
            warn!("stopping with node steps still running; the new owners redo them");
        }
        self.cluster().stop_acting();
        self.consoles().stop_all().await;
        if let Err(e) = super::recovery::release_own_reservations(self).await {
            warn!(error = %e, "releasing this coordinator's reservations failed");
        }
        if let Err(e) = self.db().unregister_conductor(self.name()).await {
            warn!(error = %e, "could not mark this coordinator offline");
        }
        if let Err(e) = self.db().notify(MEMBERS_CHANNEL, self.name()).await {
            warn!(error = %e, "announcing this coordinator's stop failed");
        }
        info!("left the group: nodes handed over");
    }
}
