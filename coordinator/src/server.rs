//! Running the daemon: database, restart recovery, the periodic timeout
//! check, and the HTTP server.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tracing::info;

use crate::api::{AppState, router};
use crate::conductor::{Conductor, ConductorError};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::power::PowerDrivers;

/// Start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Recovery.
    #[error(transparent)]
    Conductor(#[from] ConductorError),
    /// Authentication settings.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// TLS settings.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Glance settings.
    #[error("{0}")]
    Glance(String),
    /// The TFTP server.
    #[error(transparent)]
    Tftp(#[from] crate::tftp::TftpError),
    /// The DHCP server.
    #[error(transparent)]
    Dhcp(#[from] crate::dhcp::DhcpError),
    /// Switches and networks.
    #[error(transparent)]
    Network(#[from] crate::network::config::NetworkConfigError),
    /// Binding or serving.
    #[error("listening on {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started coordinator.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The conductor.
    pub conductor: Conductor,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    periodic: tokio::task::JoinHandle<()>,
    power_sync: Option<tokio::task::JoinHandle<()>>,
    /// Where the TFTP server listens, when enabled.
    pub tftp_addr: Option<SocketAddr>,
    /// Where `GET /metrics` is served, when enabled (`[metrics] listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// Network-boot services (TFTP, DHCP), stopped with the coordinator.
    net: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the server stops (it does not, unless it fails).
    pub async fn wait(self) -> std::io::Result<()> {
        let r = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.periodic.abort();
        if let Some(p) = &self.power_sync {
            p.abort();
        }
        for t in &self.net {
            t.abort();
        }
        r
    }

    /// Stops serving, stops the consoles and closes the database.
    pub async fn shutdown(self) {
        self.server.abort();
        // Hands the nodes to the group's other members (stops the consoles).
        self.conductor
            .leave(std::time::Duration::from_secs(5))
            .await;
        self.periodic.abort();
        if let Some(p) = self.power_sync {
            p.abort();
            let _ = p.await;
        }
        for t in self.net {
            t.abort();
            let _ = t.await;
        }
        let _ = self.server.await;
        let _ = self.periodic.await;
        self.conductor.db().close().await;
    }
}

/// Connects the database, binds, recovers and serves in the background.
pub async fn start(mut config: Config, power: PowerDrivers) -> Result<Running, ServeError> {
    let auth = std::sync::Arc::new(crate::auth::Authenticator::from_config(
        &config.auth,
        config.listen,
    )?);
    let tls = crate::tls::from_config(&config.api)?;
    // Switches and networks are checked now, though nothing switches ports
    // yet (issue 19): a wrong name should not wait for the first deploy.
    crate::network::config::validate(&config)?;
    crate::network::switch::Switches::from_config(&config)?;
    // Checked before anything listens; the conductor builds its own client.
    crate::glance::Glance::from_config(&config).map_err(ServeError::Glance)?;
    if config.glance.endpoint.is_some() && config.images.cache_dir.is_none() {
        return Err(ServeError::Glance(
            "[glance] endpoint needs [images] cache_dir: Glance images are served to the agent from the cache".into(),
        ));
    }
    let key = match &config.secrets_key_file {
        Some(path) => Some(crate::db::secrets::SecretBox::from_file(path).map_err(DbError::from)?),
        None => None,
    };
    let db = Db::connect_with(&config.database, config.database_max_connections)
        .await?
        .with_secrets(key)
        .await?;
    // Network-boot services bind before anything serves, so a bad setting
    // stops start-up instead of leaving a half-working coordinator.
    let mut net = Vec::new();
    let mut tftp_addr = None;
    let mut tftp = None;
    if config.tftp.enabled {
        let server = crate::tftp::TftpServer::bind(&config.tftp).await?;
        tftp_addr = server.local_addr().ok();
        tftp = Some(server);
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Io {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: config.listen,
        source,
    })?;
    // With port 0 the real port is known only now; URLs given to agents need it.
    config.listen = addr;
    let conductor = Conductor::new(db.clone(), config.clone(), power);
    if let Some(server) = tftp {
        // GRUB's grub.cfg and the deploy files of each architecture.
        let files = std::sync::Arc::new(crate::netboot::tftp::NetbootFiles::new(conductor.clone()));
        net.push(tokio::spawn(server.with_virtual_files(files).run()));
    }
    if config.dhcp.enabled {
        // After the API is bound: the boot URL handed out needs its port.
        let dhcp = crate::dhcp::DhcpServer::bind(&config, db.clone())?
            .with_arch_hints(conductor.arch_hints().clone());
        net.push(tokio::spawn(dhcp.run()));
        if config.dhcp.advertise_no_ipv6_router {
            let ra = crate::dhcp::ra::NoRouterAdvertiser::bind(&config.dhcp.interface)?;
            net.push(tokio::spawn(ra.run()));
        }
    }
    let metrics_addr = match config.metrics.listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Io { addr, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| ServeError::Io { addr, source })?;
            info!(addr = %bound, "metrics listener (GET /metrics, no authentication)");
            let app = crate::metrics::serve::router(db.clone());
            let limits = config.api.clone();
            net.push(tokio::spawn(async move {
                if let Err(e) = crate::http_server::serve(l, app, limits, None).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }));
            Some(bound)
        }
        None => None,
    };
    if let Some(acceptor) = &tls {
        conductor.consoles().set_tls(acceptor.clone());
    }
    let recovered = conductor.recover().await?;
    info!(%addr, database = %redact(&config.database), recovered, "ingot-coordinator listening");
    let app = router(AppState {
        conductor: conductor.clone(),
        auth,
    });
    let limits = config.api.clone();
    let boot_server = match config.api.boot_listen {
        Some(boot_addr) => {
            let l = TcpListener::bind(boot_addr)
                .await
                .map_err(|source| ServeError::Io {
                    addr: boot_addr,
                    source,
                })?;
            info!(addr = %boot_addr, "plain-HTTP boot listener (/boot/* only)");
            let boot_app = crate::api::boot_router(app.clone());
            Some(tokio::spawn(crate::http_server::serve(
                l,
                boot_app,
                limits.clone(),
                None,
            )))
        }
        None => None,
    };
    let server = tokio::spawn(async move {
        // The boot listener lives as long as the API's.
        let _boot = boot_server.map(crate::http_server::AbortOnDrop);
        crate::http_server::serve(listener, app, limits, tls).await
    });
    let periodic = conductor.spawn_periodic();
    let power_sync = conductor.spawn_power_sync();
    Ok(Running {
        addr,
        conductor,
        server,
        periodic,
        power_sync,
        tftp_addr,
        metrics_addr,
        net,
    })
}

/// The database URL without a password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
