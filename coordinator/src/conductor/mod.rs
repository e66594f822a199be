//! The conductor: the one owner of node lifecycle state. The API records
//! intents (a state change plus [`crate::model::Intent`]) and calls
//! [`Conductor::kick`]; a per-node worker then runs [`Conductor::handle`],
//! which reads the node and does whatever its state calls for. The handler is
//! idempotent: running it twice, or after a restart, does no harm.
//!
//! Ownership has two levels: in-process, at most one worker per node (a map of
//! running workers); in the database, the node's `reservation` column holds
//! this conductor's name while it acts, so API calls and other coordinators
//! get 409 `NodeLocked` instead of interleaving.

mod clean;
mod deploy;
mod fast_track;
mod history;
mod inspect;
mod membership;
mod network;
mod outcome;
mod phase;
mod power;
mod power_sync;
mod progress;
mod recovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::agent_client::{AgentClient, AgentEndpoint, AgentError};
use crate::config::Config;
use crate::db::{Db, DbError, UpdateError};
use crate::model::Node;
use crate::power::{PowerAction, PowerDriver, PowerDrivers, PowerError, PowerState, PowerTarget};
use crate::state::{Event, ProvisionState};
use clean::Clean;
use deploy::Deploy;
use inspect::Inspect;
use outcome::{Outcome, Target};

pub use inspect::apply_inventory;
pub use network::NetworkSyncReport;
pub use power_sync::{POWER_FAILURE, SyncReport};

/// Errors inside the handler that are not the node's fault.
#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The state table refused a transition the conductor decided (a bug:
    /// the node's state and the handler disagree); see [`outcome`].
    #[error("the conductor's transition was refused: {0}")]
    Transition(#[from] crate::state::InvalidTransition),
    /// This coordinator no longer acts for the node: another holds it under
    /// a newer fencing token, or this one's lease ran out (docs/ha.md).
    /// Nothing was written.
    #[error("this coordinator no longer acts for node {0}")]
    Fenced(String),
}

/// Why a lock attempt did not give us the node.
#[derive(Debug)]
enum NotOurs {
    Locked,
    Changed,
}

impl From<UpdateError<NotOurs>> for ConductorError {
    fn from(e: UpdateError<NotOurs>) -> Self {
        match e {
            UpdateError::Db(d) => Self::Db(d),
            UpdateError::Refused(_) => Self::Db(DbError::Contended("lock".into())),
        }
    }
}

impl From<UpdateError<std::convert::Infallible>> for ConductorError {
    fn from(e: UpdateError<std::convert::Infallible>) -> Self {
        match e {
            UpdateError::Db(d) => Self::Db(d),
            UpdateError::Refused(never) => match never {},
        }
    }
}

struct Inner {
    db: Db,
    config: Config,
    cache: Option<crate::image_cache::ImageCache>,
    glance: Option<crate::glance::Glance>,
    power: PowerDrivers,
    agent: AgentClient,
    workers: Mutex<HashMap<String, bool>>,
    sync: power_sync::SyncState,
    consoles: crate::console::Consoles,
    url_key: std::sync::OnceLock<crate::temp_url::UrlKey>,
    cluster: crate::cluster::Cluster,
    /// The fencing token of each node this coordinator holds reserved.
    held: Mutex<HashMap<String, i64>>,
    /// A graceful stop has begun: no new work starts.
    draining: std::sync::atomic::AtomicBool,
    /// The configured switches (`[switches]`; conductor/network.rs).
    switches: crate::network::switch::Switches,
    /// The architectures firmware reported in DHCP (option 93), by MAC.
    arch_hints: Arc<crate::netboot::arch::ArchHints>,
    /// Turns to start work on a node (`[conductor] max_concurrent_starts`;
    /// [`Conductor::handle`]).
    starts: tokio::sync::Semaphore,
}

/// The conductor handle (cheap to clone).
#[derive(Clone)]
pub struct Conductor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("name", &self.inner.config.conductor_name)
            .finish()
    }
}

/// Whether the handler should run again at once.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Again,
    Idle,
}

impl Conductor {
    /// A conductor over `db`.
    pub fn new(db: Db, config: Config, power: PowerDrivers) -> Self {
        let agent = AgentClient::new(Duration::from_secs(config.agent_command_timeout));
        let cluster = crate::cluster::Cluster::new(
            &config.conductor_name,
            db.backend() == crate::db::Backend::Postgres,
            config.conductor.clone(),
        );
        // server::start refuses bad [switches]; here they are only built.
        let switches = crate::network::switch::Switches::from_config(&config).unwrap_or_default();
        let config_starts = config.conductor.max_concurrent_starts.max(1);
        Self {
            inner: Arc::new(Inner {
                db,
                cache: config
                    .images
                    .cache_dir
                    .clone()
                    .map(crate::image_cache::ImageCache::new),
                // server::start refuses a bad [glance]; here it is only built.
                glance: crate::glance::Glance::from_config(&config).ok().flatten(),
                config,
                power,
                agent,
                workers: Mutex::new(HashMap::new()),
                sync: power_sync::SyncState::default(),
                consoles: crate::console::Consoles::default(),
                url_key: std::sync::OnceLock::new(),
                cluster,
                held: Mutex::new(HashMap::new()),
                draining: std::sync::atomic::AtomicBool::new(false),
                switches,
                arch_hints: Arc::default(),
                starts: tokio::sync::Semaphore::new(config_starts),
            }),
        }
    }

    /// The architectures firmware reported in DHCP option 93, by MAC (the
    /// DHCP server records them; the boot scripts read them).
    pub fn arch_hints(&self) -> &Arc<crate::netboot::arch::ArchHints> {
        &self.inner.arch_hints
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The key that signs image URLs: shared through the database (loaded
    /// by [`Conductor::recover`]); a process-local one before that.
    pub fn url_key(&self) -> &crate::temp_url::UrlKey {
        self.inner.url_key.get_or_init(|| {
            crate::temp_url::UrlKey::from_hex(&crate::temp_url::UrlKey::random_hex())
                .unwrap_or_else(unreachable_key)
        })
    }

    /// Loads the database's image URL key.
    async fn load_url_key(&self) -> Result<(), ConductorError> {
        let hex = self
            .db()
            .shared_secret("image_url_key", crate::temp_url::UrlKey::random_hex)
            .await?;
        match crate::temp_url::UrlKey::from_hex(&hex) {
            Some(k) => {
                if self.inner.url_key.set(k).is_err() {
                    warn!(
                        "the image URL key was used before it was loaded; URLs signed before now fail"
                    );
                }
            }
            None => warn!("the stored image URL key is malformed; using a process-local one"),
        }
        Ok(())
    }

    /// The image cache, when configured.
    pub fn image_cache(&self) -> Option<&crate::image_cache::ImageCache> {
        self.inner.cache.as_ref()
    }

    /// The Glance client, when `[glance] endpoint` is set.
    pub fn glance(&self) -> Option<&crate::glance::Glance> {
        self.inner.glance.as_ref()
    }

    /// The nodes' serial consoles.
    pub fn consoles(&self) -> &crate::console::Consoles {
        &self.inner.consoles
    }

    /// This conductor's name (the `reservation` it writes).
    pub fn name(&self) -> &str {
        &self.inner.config.conductor_name
    }

    /// The power driver of a node.
    pub fn power_driver(&self, node: &Node) -> Result<Arc<dyn PowerDriver>, PowerError> {
        let iface = node.power_interface.as_deref().unwrap_or("fake");
        self.inner.power.get(iface).ok_or_else(|| {
            PowerError::Unsupported(format!("no power driver for power interface {iface}"))
        })
    }

    /// What a power driver needs about the node; its boot mode is the one
    /// the deploy uses ([`crate::model::boot_mode::for_deploy`]).
    pub fn power_target(node: &Node) -> PowerTarget {
        PowerTarget {
            node_uuid: node.uuid.clone(),
            driver_info: node.driver_info.clone(),
            recorded: node.power_state,
            boot_mode: crate::model::boot_mode::for_deploy(node).map(|m| m.as_str().to_owned()),
        }
    }

    /// Starts this coordinator's worker for the node (or asks the running
    /// one to look again); see [`Conductor::kick`] for the node's owner's.
    fn kick_local(&self, uuid: &str) {
        if self
            .inner
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let mut workers = match self.inner.workers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(dirty) = workers.get_mut(uuid) {
            *dirty = true;
            return;
        }
        workers.insert(uuid.to_owned(), false);
        drop(workers);
        let me = self.clone();
        let uuid = uuid.to_owned();
        tokio::spawn(async move { me.worker(uuid).await });
    }

    async fn worker(self, uuid: String) {
        loop {
            match self.handle(&uuid).await {
                Ok(()) => {}
                Err(ConductorError::Fenced(_)) => {
                    info!(node = %uuid, "not acting on the node: another coordinator holds it, or this one's lease ran out");
                }
                Err(e) => warn!(node = %uuid, error = %e, "node handler failed"),
            }
            let mut workers = match self.inner.workers.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if workers.get(&uuid) == Some(&true) {
                workers.insert(uuid.clone(), false);
                continue;
            }
            workers.remove(&uuid);
            break;
        }
    }

    /// True while a worker runs for the node (for tests and shutdown).
    pub fn busy(&self) -> bool {
        match self.inner.workers.lock() {
            Ok(g) => !g.is_empty(),
            Err(p) => !p.into_inner().is_empty(),
        }
    }

    /// Does whatever the node's state and intents call for. Idempotent.
    pub async fn handle(&self, uuid: &str) -> Result<(), ConductorError> {
        for _ in 0..16 {
            if !self.cluster().can_act() {
                return Ok(());
            }
            let Some((mut node, _)) = self.db().get_node(uuid).await? else {
                return Ok(());
            };
            self.sync_console(&node).await;
            // New work takes a turn; driving a waiting agent does not.
            let _turn = if starts_work(&node) {
                let Ok(turn) = self.inner.starts.acquire().await else {
                    return Ok(());
                };
                // The node may have moved on while this waited.
                let Some((fresh, _)) = self.db().get_node(uuid).await? else {
                    return Ok(());
                };
                node = fresh;
                Some(turn)
            } else {
                None
            };
            let next = if power_requested(&node) {
                self.handle_power_intent(node).await?
            } else {
                match node.provision_state {
                    ProvisionState::Verifying => self.verify(node).await?,
                    ProvisionState::Inspecting => self.start_phase(&Inspect, node).await?,
                    ProvisionState::InspectWait => self.continue_phase(&Inspect, node).await?,
                    ProvisionState::Cleaning => self.start_phase(&Clean, node).await?,
                    ProvisionState::CleanWait => self.continue_phase(&Clean, node).await?,
                    ProvisionState::Deploying => self.start_phase(&Deploy, node).await?,
                    ProvisionState::WaitCallBack => self.continue_phase(&Deploy, node).await?,
                    ProvisionState::Deleting => self.tear_down(node).await?,
                    _ => Next::Idle,
                }
            };
            if next == Next::Idle {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Takes the node's reservation if it is in `expect` and not locked.
    async fn lock(
        &self,
        uuid: &str,
        expect: impl Fn(&Node) -> bool,
    ) -> Result<Option<Node>, ConductorError> {
        if !self.cluster().can_act() {
            return Ok(None);
        }
        let me = self.name().to_owned();
        let mut previous = None;
        let r = self
            .db()
            .update_node(uuid, |n| {
                if n.reservation.as_deref().is_some_and(|r| r != me) {
                    return Err(NotOurs::Locked);
                }
                if !expect(n) {
                    return Err(NotOurs::Changed);
                }
                n.reservation = Some(me.clone());
                previous = None;
                if n.conductor.as_deref() != Some(me.as_str()) {
                    // A takeover: a new fencing token.
                    previous = Some(n.conductor.clone().unwrap_or_default());
                    n.fence = n.fence.saturating_add(1);
                    n.conductor = Some(me.clone());
                }
                Ok(())
            })
            .await;
        match r {
            Ok(n) => {
                self.held().insert(n.uuid.clone(), n.fence);
                if let Some(from) = previous.filter(|p| !p.is_empty()) {
                    info!(node = %n.uuid, %from, fence = n.fence, "node taken over");
                    self.journal_instant(&n, "takeover", &format!("from {from}"))
                        .await;
                }
                Ok(Some(n))
            }
            Err(UpdateError::Refused(_)) => Ok(None),
            Err(UpdateError::Db(e)) => Err(e.into()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        match self.inner.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The check every write of the conductor makes, in the same
    /// compare-and-swap: no other coordinator holds the node's reservation,
    /// and while this one holds it, its fencing token has not moved on.
    fn guard(&self, uuid: &str) -> Result<impl Fn(&Node) -> bool + use<>, ConductorError> {
        if !self.cluster().can_act() {
            return Err(ConductorError::Fenced(uuid.to_owned()));
        }
        let me = self.name().to_owned();
        let fence = self.held().get(uuid).copied();
        Ok(move |n: &Node| {
            n.reservation.as_deref().is_none_or(|r| r == me) && fence.is_none_or(|f| f == n.fence)
        })
    }

    /// Applies `f` and releases the reservation in the same write.
    async fn release(&self, uuid: &str, f: impl Fn(&mut Node)) -> Result<Node, ConductorError> {
        let ok = self.guard(uuid)?;
        let r = self
            .db()
            .update_node(uuid, |n| {
                if !ok(n) {
                    return Err(());
                }
                f(n);
                n.reservation = None;
                Ok(())
            })
            .await;
        self.held().remove(uuid);
        match r {
            Ok(n) => Ok(n),
            Err(UpdateError::Refused(())) => Err(ConductorError::Fenced(uuid.to_owned())),
            Err(UpdateError::Db(e)) => Err(e.into()),
        }
    }

    /// Changes the node without touching the reservation.
    async fn modify(&self, uuid: &str, f: impl Fn(&mut Node)) -> Result<Node, ConductorError> {
        let ok = self.guard(uuid)?;
        match self
            .db()
            .update_node(uuid, |n| {
                if !ok(n) {
                    return Err(());
                }
                f(n);
                Ok(())
            })
            .await
        {
            Ok(n) => Ok(n),
            Err(UpdateError::Refused(())) => Err(ConductorError::Fenced(uuid.to_owned())),
            Err(UpdateError::Db(e)) => Err(e.into()),
        }
    }

    /// Runs `action` on the node with the journal around it: refused
    /// (`None`, nothing done) when this coordinator may not act on the node
    /// now (its lease ran out, another holds the node or a newer token).
    /// `verdict` tells how it ended, for the node history.
    async fn journaled<T>(
        &self,
        node: &Node,
        kind: &str,
        detail: &str,
        action: impl std::future::Future<Output = T>,
        verdict: impl Fn(&T) -> Result<(), String>,
    ) -> Option<T> {
        if !self.cluster().can_act() {
            return None;
        }
        let mut e = self.event(node, kind, detail);
        e.event = history_text(kind, detail);
        let fence = e.fence;
        let id = match self.db().journal_begin(&e).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                warn!(node = %node.uuid, kind, detail, fence, "not acting: the node is held by another coordinator or under a newer token");
                return None;
            }
            Err(e) => {
                warn!(node = %node.uuid, kind, detail, error = %e, "not acting: the action cannot be journalled");
                return None;
            }
        };
        let out = action.await;
        let (result, severity, text) = match verdict(&out) {
            Ok(()) => ("succeeded".to_owned(), "INFO", None),
            Err(why) => (
                format!("failed: {why}"),
                "ERROR",
                Some(format!("{} failed: {why}", history_text(kind, detail))),
            ),
        };
        if let Err(e) = self
            .db()
            .journal_end(&id, &result, severity, text.as_deref())
            .await
        {
            warn!(node = %node.uuid, error = %e, "journalling the end of an action failed");
        }
        self.prune(&node.uuid).await;
        Some(out)
    }

    /// Sends an agent command, journalled ([`Conductor::journaled`]); a
    /// refusal reads as a busy agent (nothing happens until the next look).
    async fn agent_execute(
        &self,
        node: &Node,
        ep: &AgentEndpoint,
        name: &str,
        params: Map<String, Value>,
        wait: bool,
    ) -> Result<ingot_proto::agent::CommandResult, AgentError> {
        self.journaled(
            node,
            "agent",
            name,
            self.agent().execute(ep, name, params, wait),
            |r| match r {
                Ok(r) if r.command_status == ingot_proto::agent::CommandStatus::Failed => {
                    Err(command_error_text(r))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        )
        .await
        .unwrap_or_else(|| {
            Err(AgentError::Busy(
                "this coordinator does not act on the node now".into(),
            ))
        })
    }

    /// Detaches every VIF of the node (Ironic's `remove_vifs_from_node`): on
    /// tear-down, a failed deploy and when the instance fields are removed,
    /// so that the next instance finds its NICs free. Returns how many.
    pub async fn detach_vifs(&self, uuid: &str) -> Result<usize, ConductorError> {
        let mut detached = 0;
        for mut port in self.db().list_ports(Some(uuid)).await? {
            if port.internal_info.remove("tenant_vif_port_id").is_some() {
                port.updated_at = Some(crate::model::now_iso());
                self.db().update_port(&port).await?;
                detached += 1;
            }
        }
        if detached > 0 {
            info!(node = %uuid, detached, "VIFs detached");
        }
        Ok(detached)
    }

    /// Changes the power state through the driver and records it.
    async fn set_power(&self, node: &Node, action: PowerAction) -> Result<(), PowerError> {
        if node.disable_power_off && matches!(action, PowerAction::Off | PowerAction::SoftOff) {
            return Ok(());
        }
        let driver = self.power_driver(node)?;
        let target = Self::power_target(node);
        let result = self
            .journaled(
                node,
                "power",
                &action.to_string(),
                driver.set_power_state(&target, action),
                |r| r.as_ref().map(|_| ()).map_err(ToString::to_string),
            )
            .await
            .unwrap_or_else(|| {
                Err(PowerError::Failed(
                    "this coordinator does not act on the node now".into(),
                ))
            });
        if let Err(e) = &result {
            crate::metrics::bmc_error(node.power_interface.as_deref(), e.kind());
        }
        // As Ironic: every power action (failed ones too) is timestamped in
        // driver_internal_info.last_power_state_change (naive UTC).
        let stamp = crate::model::now_iso().replace("+00:00", "");
        let state = result.is_ok().then(|| action.resulting_state());
        if let Err(e) = self
            .modify(&node.uuid, move |n| {
                n.driver_internal_info.insert(
                    "last_power_state_change".into(),
                    Value::String(stamp.clone()),
                );
                if let Some(s) = state {
                    n.power_state = Some(s);
                }
            })
            .await
        {
            warn!(node = %node.uuid, error = %e, "recording the power state failed");
        }
        result
    }

    /// Sets the boot device unless the management interface is `noop`.
    async fn set_boot_device(
        &self,
        node: &Node,
        device: &str,
        persistent: bool,
    ) -> Result<(), PowerError> {
        if node.management_interface.as_deref() == Some("noop") {
            return Ok(());
        }
        let driver = self.power_driver(node)?;
        let target = Self::power_target(node);
        self.journaled(
            node,
            "boot_device",
            device,
            driver.set_boot_device(&target, device, persistent),
            |r| r.as_ref().map(|_| ()).map_err(ToString::to_string),
        )
        .await
        .unwrap_or_else(|| {
            Err(PowerError::Failed(
                "this coordinator does not act on the node now".into(),
            ))
        })
    }

    /// Boots the node from the network into the agent: boot device PXE, then
    /// reboot (or power on if off).
    async fn boot_agent(&self, node: &Node) -> Result<(), PowerError> {
        self.set_boot_device(node, "pxe", false).await?;
        let action = if node.power_state == Some(PowerState::On) {
            PowerAction::Reboot
        } else {
            PowerAction::On
        };
        self.set_power(node, action).await
    }

    /// Takes the reservation of a node waiting in `state` for its agent, and
    /// returns it with the agent's endpoint; `None` when the node moved on, is
    /// locked elsewhere, or has no usable endpoint (then nothing is held).
    async fn lock_waiting_for_agent(
        &self,
        node: &Node,
        state: ProvisionState,
    ) -> Result<Option<(Node, AgentEndpoint)>, ConductorError> {
        if node.agent_url().is_none() {
            return Ok(None);
        }
        let Some(node) = self
            .lock(&node.uuid, |n| {
                n.provision_state == state && n.agent_url().is_some()
            })
            .await?
        else {
            return Ok(None);
        };
        let Some(ep) = Self::endpoint(&node) else {
            self.release(&node.uuid, |_| {}).await?;
            return Ok(None);
        };
        Ok(Some((node, ep)))
    }

    /// The agent endpoint recorded from heartbeats.
    fn endpoint(node: &Node) -> Option<AgentEndpoint> {
        Some(AgentEndpoint {
            url: node.agent_url()?.to_owned(),
            token: node.agent_token()?.to_owned(),
            verify_ca: node
                .driver_internal_info
                .get("agent_verify_ca")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn agent(&self) -> &AgentClient {
        &self.inner.agent
    }

    /// `node` and `ports` parameters of step commands, as Ironic sends them.
    async fn step_params(&self, node: &Node) -> Result<Map<String, Value>, ConductorError> {
        let ports: Vec<Value> = self
            .db()
            .list_ports(Some(&node.uuid))
            .await?
            .iter()
            .map(|p| Value::Object(p.to_api("")))
            .collect();
        let mut params = Map::new();
        params.insert("node".into(), Value::Object(node.to_api("")));
        params.insert("ports".into(), Value::Array(ports));
        Ok(params)
    }

    /// Verifying: the power driver validates driver_info and reads the power state.
    async fn verify(&self, node: Node) -> Result<Next, ConductorError> {
        let Some(node) = self
            .lock(&node.uuid, |n| {
                n.provision_state == ProvisionState::Verifying
            })
            .await?
        else {
            return Ok(Next::Idle);
        };
        let result = async {
            let driver = self.power_driver(&node)?;
            driver.validate(&node.driver_info)?;
            let target = Self::power_target(&node);
            if !driver.knows_power_state(&target) {
                return Ok(None);
            }
            driver.get_power_state(&target).await.map(Some)
        }
        .await;
        if result.is_ok() {
            info!(node = %node.uuid, "credentials verified");
        }
        self.apply(&node.uuid, verified(result)).await
    }

    /// Restart recovery; see [`recovery`]. Also loads the shared image URL key.
    pub async fn recover(&self) -> Result<usize, ConductorError> {
        self.load_url_key().await?;
        recovery::recover(self).await
    }

    /// One pass of the wait-state timeout check; see [`recovery`].
    pub async fn check_timeouts(&self) -> Result<usize, ConductorError> {
        recovery::check_timeouts(self).await
    }

    /// Starts the periodic tasks: the wait-state timeout check, the
    /// membership loop and (on PostgreSQL) the listener for the group's
    /// notifications. Abort them all through the returned handle.
    pub fn spawn_periodic(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let membership = crate::http_server::AbortOnDrop(me.spawn_membership());
            let listener = me.spawn_listener().map(crate::http_server::AbortOnDrop);
            let network_sync = me.spawn_network_sync().map(crate::http_server::AbortOnDrop);
            let _keep = (membership, listener, network_sync);
            let mut tick =
                tokio::time::interval(Duration::from_millis(me.config().check_interval_ms.max(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.check_timeouts().await {
                    warn!(error = %e, "timeout check failed");
                }
            }
        })
    }
}

/// Whether a power request waits, and the node is where it may be acted on.
fn power_requested(node: &Node) -> bool {
    node.power_intent.is_some() && !node.provision_state.is_transient()
}

/// Whether the node has an operation to start (which takes a turn of
/// `[conductor] max_concurrent_starts`), rather than an agent to drive.
fn starts_work(node: &Node) -> bool {
    power_requested(node)
        || matches!(
            node.provision_state,
            ProvisionState::Verifying
                | ProvisionState::Inspecting
                | ProvisionState::Cleaning
                | ProvisionState::Deploying
                | ProvisionState::Deleting
        )
}

/// The end of verifying: `manageable` with the power state read (when the
/// driver knows it), or back to `enroll` with the reason.
fn verified(result: Result<Option<PowerState>, PowerError>) -> Outcome {
    match result {
        Ok(state) => Outcome::transition(Event::Done, Target::Clear, move |n| {
            if let Some(state) = state {
                n.power_state = Some(state);
            }
            n.intent = None;
            n.last_error = None;
        }),
        Err(e) => Outcome::fail(
            format!("Failed to verify the node's credentials: {e}"),
            false,
        ),
    }
}

#[cold]
fn unreachable_key() -> crate::temp_url::UrlKey {
    // random_hex always gives 64 hex digits.
    #[allow(clippy::expect_used)]
    crate::temp_url::UrlKey::from_hex(&"0".repeat(64)).expect("64 hex digits")
}

/// Describes an agent command failure for `last_error`.
fn command_error_text(r: &ingot_proto::agent::CommandResult) -> String {
    match &r.command_error {
        Some(e) => format!("{}: {} {}", e.kind, e.message, e.details)
            .trim()
            .to_owned(),
        None => "unknown error".into(),
    }
}

/// The milliseconds a wait state may last without news.
fn wait_timeout_ms(config: &Config, state: ProvisionState) -> Option<i64> {
    let secs = match state {
        ProvisionState::WaitCallBack => config.deploy_callback_timeout,
        ProvisionState::CleanWait => config.clean_callback_timeout,
        ProvisionState::InspectWait => config.inspect_wait_timeout,
        _ => return None,
    };
    Some(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}

/// The history's text of a journalled action.
fn history_text(kind: &str, detail: &str) -> String {
    match kind {
        "power" => format!("Power action {detail}"),
        "boot_device" => format!("Boot device set to {detail}"),
        "agent" => format!("Agent command {detail}"),
        _ => format!("{kind} {detail}"),
    }
}

/// True when `err` means "try again on the next heartbeat".
fn is_busy(err: &AgentError) -> bool {
    matches!(err, AgentError::Busy(_))
}

/// Checks that `instance_info` is enough for an agent deploy (image URL and
/// checksum, config drive form).
pub fn image_info_for(node: &Node) -> Result<(), String> {
    deploy::image_info(node).map(|_| ())
}

impl Conductor {
    /// [`image_info_for`] with this coordinator's Glance: a Glance image
    /// source passes when Glance is configured (it is looked up when the
    /// deploy starts).
    pub fn check_image_source(&self, node: &Node) -> Result<(), String> {
        match deploy::glance_image_id(node) {
            Some(id) if self.glance().is_none() => {
                Err(crate::glance::GlanceError::NotConfigured(id.to_owned()).to_string())
            }
            Some(_) => deploy::image_info_with_source(node, true).map(|_| ()),
            None => image_info_for(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_ends_manageable_or_back_in_enroll() {
        let verifying = Node {
            provision_state: ProvisionState::Verifying,
            target_provision_state: Some(ProvisionState::Manageable),
            last_error: Some("old".into()),
            ..Node::default()
        };
        let mut n = verifying.clone();
        verified(Ok(Some(PowerState::On))).apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Manageable);
        assert_eq!(n.power_state, Some(PowerState::On));
        assert_eq!(n.last_error, None);
        let mut n = verifying.clone();
        verified(Ok(None)).apply_to(&mut n).unwrap();
        assert_eq!(
            n.power_state, None,
            "a driver that cannot read the power leaves it"
        );
        let mut n = verifying;
        let failed = verified(Err(PowerError::Unsupported("no BMC".into())));
        failed.apply_to(&mut n).unwrap();
        assert_eq!(n.provision_state, ProvisionState::Enroll);
        assert!(
            n.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("Failed to verify the node's credentials"))
        );
    }
}
