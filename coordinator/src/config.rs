//! The coordinator's configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:6385"
//! database = "sqlite://ingot.db"
//! database_max_connections = 32 # the pool's size; default 4 on SQLite, 16 on PostgreSQL
//! conductor_name = "ingot"
//! secrets_key_file = "/etc/ingot/secrets.key"  # driver_info secrets encrypted at rest (64 hex digits, 0600)
//! conductor_group = ""
//! heartbeat_timeout = 30         # seconds; agents heartbeat every 0.3-0.6x this
//! deploy_callback_timeout = 1800 # seconds without news from the agent in wait call-back
//! clean_callback_timeout = 1800  # … in clean wait
//! inspect_wait_timeout = 1800    # … in inspect wait
//! check_interval_ms = 5000       # how often wait-state timeouts are checked
//! automated_clean = true
//! secure_erase = false           # automated cleaning runs erase_devices instead of metadata
//! fast_track = false             # keep the agent running between phases (Ironic's [deploy] fast_track)
//! fast_track_timeout = 300       # seconds since the last heartbeat within which the agent is reused
//!
//! [conductor]                    # a group of coordinators on one PostgreSQL (docs/ha.md)
//! heartbeat_interval = 10        # seconds between this coordinator's heartbeats in the database
//! heartbeat_timeout = 60         # seconds after which a silent coordinator counts as dead
//! hash_ring_reset_interval = 15  # seconds between hash ring refreshes (sooner on a change)
//! hash_partition_exponent = 10   # 2^N points per coordinator on the hash ring
//! node_history_max_entries = 300 # history entries kept per node
//! max_concurrent_starts = 50     # nodes whose operation starts at once; agents are never kept waiting by it
//!
//! [auth]                         # who may call the API (docs/security.md)
//! strategy = "noauth"            # noauth | http_basic | keystone
//! allow_noauth_on_network = false # noauth is refused on a non-loopback listen address
//! htpasswd_file = "/etc/ingot/htpasswd"  # http_basic: bcrypt entries (htpasswd -B)
//! service_project_name = "service"       # the service role in this project acts as a system member
//! [auth.users.alice]             # http_basic: roles and scope; unlisted users are system admins
//! roles = ["member"]
//! project = "<project id>"       # omit for system scope
//! [auth.keystone]                # keystone: the service's own credentials
//! auth_url = "http://keystone:5000/v3"
//! username = "ingot"
//! password = "…"
//! project_name = "service"
//! cache_seconds = 300            # validated tokens are remembered at most this long
//!
//! [api]                          # limits of the HTTP server (defaults shown)
//! header_timeout_ms = 20000      # a request's headers, and a kept-alive connection's idle time
//! body_timeout_ms = 30000        # a request's body
//! max_body_bytes = 2097152       # larger bodies get 413
//! max_connections = 1024
//! max_connections_per_ip = 256
//! max_requests_per_connection = 1000
//! tls_cert_file = "/etc/ingot/api.crt"  # PEM chain: the API serves HTTPS (with tls_key_file)
//! tls_key_file = "/etc/ingot/api.key"
//! boot_listen = "10.0.0.1:8080"  # optional plain-HTTP listener for /boot/* only (iPXE without HTTPS)
//!
//! [boot]                         # network boot of the agent ramdisk (optional)
//! kernel = "/srv/ingot/vmlinuz"
//! initramfs = "/srv/ingot/initramfs.img"
//! api_url = "http://10.0.2.2:6385"   # what agents call; default: the URL iPXE used
//! kernel_params = "console=tty0 console=ttyS0,115200n8"
//! agent_ca_file = "/etc/ingot/ca.pem"   # CA agents trust for the API's HTTPS (ingot.ca_b64=)
//! [boot.by_arch.aarch64]         # per cpu_arch (Ironic's deploy_kernel_by_arch/deploy_ramdisk_by_arch)
//! kernel = "/srv/ingot/arm64/vmlinuz"          # served at /boot/aarch64/vmlinuz and TFTP ingot/aarch64/vmlinuz
//! initramfs = "/srv/ingot/arm64/initramfs.img" # other architectures get [boot] kernel/initramfs
//! kernel_params = "console=ttyAMA0"            # default: [boot] kernel_params
//!
//! [power_sync]                   # periodic power-state sync (Ironic's _sync_power_states)
//! interval_ms = 120000           # 0 turns it off
//! workers = 100                  # nodes read at once
//! max_retries = 3                # consecutive failures before maintenance
//! recovery_interval_ms = 300000  # retry nodes put in maintenance by the sync; 0: never
//!
//! [images]                       # image cache (optional)
//! cache_dir = "/var/cache/ingot/images"
//! url = "http://10.0.2.2:6385"   # base URL agents download from; default: boot.api_url, else http://<listen>
//! always = false                 # cache every image, not only image_download_source = "local"
//! url_ttl = 3600                 # seconds a signed, per-node image URL stays valid
//!
//! [glance]                       # image_source given as a Glance UUID (needs [images] cache_dir)
//! endpoint = "http://glance:9292"
//! auth_type = "none"             # none | token | password ([auth.keystone]'s service user)
//! token = "…"                    # auth_type = "token"
//! timeout_ms = 30000
//!
//! [tftp]                         # TFTP for PXE boot loaders (docs/network.md)
//! enabled = false
//! listen = "0.0.0.0:69"
//! root = "/usr/lib/ipxe"         # default: Debian's ipxe loaders when present
//! max_transfers = 64             # at once; more get "server busy"
//! timeout_ms = 1000              # retransmission interval unless the client asks (timeout option)
//! retries = 5                    # retransmissions of one block before giving up
//! transfer_timeout = 300         # seconds one whole transfer may take
//! grub_arm64 = "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"  # served as grubnetaa64.efi (default shown, when installed)
//!
//! [dhcp]                         # DHCPv4 / proxyDHCP for network boot (docs/network.md)
//! enabled = false
//! interface = "br0"              # bound with SO_BINDTODEVICE (needs root or CAP_NET_RAW)
//! server_ip = "10.0.0.1"         # this host's address on that interface
//! mode = "full"                  # full: addresses from the range | proxy: boot information only
//! range_start = "10.0.0.100"     # full mode
//! range_end = "10.0.0.199"
//! subnet_mask = "255.255.255.0"
//! router = "10.0.0.1"            # optional
//! dns = ["10.0.0.1"]             # optional
//! lease_time = 3600              # seconds
//! unknown_macs = "ignore"        # ignore | inspect (answer MACs of no enrolled port too)
//! unknown_macs_limit = 16        # inspect: at most this many unknown MACs hold an address
//! http_url = "http://10.0.0.1:8080"  # base of /boot/boot.ipxe; default: [api] boot_listen, else listen
//! bios_loader = "undionly.kpxe"  # TFTP file for BIOS PXE (arch 0)
//! uefi_loader = "snponly.efi"    # … x86-64 UEFI PXE (arch 7, 9)
//! arm64_loader = "grubnetaa64.efi"  # … arm64 UEFI PXE (arch 11): Debian's signed network GRUB
//!
//! [switches.tor1]                # switches carrying the nodes' ports (docs/network.md)
//! driver = "ovsdb"               # Open vSwitch over OVSDB; "ssh" is coming
//! address = "unix:/run/openvswitch/db.sock"  # or "tcp:10.0.0.2:6640"
//! timeout_ms = 10000
//! [networks.provisioning]        # named networks (crate::network::config)
//! vlan = 100
//! physical_network = "physnet1"  # optional
//! [networks.quarantine]
//! vlan = 4000
//! [network_roles]                # which network serves which phase
//! provisioning = "provisioning"
//! quarantine = "quarantine"      # cleaning, inspection, rescue default to provisioning
//! [metrics]                      # Prometheus metrics (docs/operations.md)
//! listen = "127.0.0.1:9608"      # GET /metrics here, without authentication; default: off
//! [network_sync]                 # drift check of the switched ports
//! interval_ms = 60000            # 0 turns it off
//! attempts = 3                   # set + read back tries per change before failing closed
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
}

/// Everything the daemon needs to know.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the API.
    pub listen: SocketAddr,
    /// Database URL (`sqlite://…` or `postgres://…`).
    pub database: String,
    /// The most connections the coordinator opens to the database (`None`
    /// or 0: 4 on SQLite, 16 on PostgreSQL; see [`crate::db::PG_MAX_CONNECTIONS`]).
    pub database_max_connections: Option<u32>,
    /// Name of this coordinator, stored in `reservation` and `conductor`.
    pub conductor_name: String,
    /// A key file (64 hex digits, mode 0600): `driver_info` secrets are
    /// encrypted at rest with it (AES-256-GCM).
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// This coordinator's group (Ironic's `[conductor] conductor_group`).
    pub conductor_group: String,
    /// Membership of a group of coordinators.
    pub conductor: ConductorConfig,
    /// The `heartbeat_timeout` agents get at lookup (seconds).
    pub heartbeat_timeout: u64,
    /// Timeout of `wait call-back` (seconds without news from the agent).
    pub deploy_callback_timeout: u64,
    /// Timeout of `clean wait`.
    pub clean_callback_timeout: u64,
    /// Timeout of `inspect wait`.
    pub inspect_wait_timeout: u64,
    /// How often wait-state timeouts are checked (milliseconds).
    pub check_interval_ms: u64,
    /// Automated cleaning on provide and after undeploy (per node: `automated_clean`).
    pub automated_clean: bool,
    /// Automated cleaning does a secure erase (`erase_devices`) instead of a
    /// metadata wipe (per node: `driver_info.ingot_secure_erase`).
    pub secure_erase: bool,
    /// Timeout of one HTTP request to an agent (seconds).
    pub agent_command_timeout: u64,
    /// Fast track (Ironic's `[deploy] fast_track`): after inspection and
    /// cleaning the node stays powered on with the agent running, and the
    /// next phase drives that agent instead of booting the ramdisk again
    /// (per node: `driver_info.fast_track`).
    pub fast_track: bool,
    /// How recent the agent's last heartbeat must be for fast track to reuse
    /// it (seconds; Ironic's `[deploy] fast_track_timeout`).
    pub fast_track_timeout: u64,
    /// Authentication of API clients.
    pub auth: AuthConfig,
    /// Limits of the API's HTTP server.
    pub api: ApiConfig,
    /// Network boot of the agent ramdisk.
    pub boot: BootConfig,
    /// The image cache.
    pub images: ImagesConfig,
    /// Glance, for `image_source` given as a Glance image UUID.
    pub glance: GlanceConfig,
    /// The periodic power-state sync.
    pub power_sync: PowerSyncConfig,
    /// The TFTP server for PXE boot loaders.
    pub tftp: TftpConfig,
    /// The DHCP server for network boot.
    pub dhcp: DhcpConfig,
    /// The switches carrying the nodes' ports, by name.
    pub switches: std::collections::BTreeMap<String, crate::network::config::SwitchConfig>,
    /// Named networks (VLANs), by name.
    pub networks: std::collections::BTreeMap<String, crate::network::config::NetworkConfig>,
    /// Which network serves which phase.
    pub network_roles: crate::network::config::NetworkRoles,
    /// The periodic check of the switch ports.
    pub network_sync: crate::network::config::NetworkSyncConfig,
    /// The Prometheus metrics listener.
    pub metrics: MetricsConfig,
}

/// `[metrics]`: where `GET /metrics` is served (see [`crate::metrics`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics listener; `None` (the default) serves no
    /// metrics. It has no authentication: a loopback or management address.
    pub listen: Option<SocketAddr>,
}

/// How the DHCP server hands out addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DhcpMode {
    /// A DHCP server: addresses from the range, plus boot information.
    #[default]
    Full,
    /// A proxyDHCP server (PXE specification): boot information only,
    /// beside another DHCP server that hands out the addresses.
    Proxy,
}

/// What the DHCP server does with MACs of no enrolled port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMacs {
    /// No answer (logged at debug level).
    #[default]
    Ignore,
    /// Answered like a booting node, so that it reaches `/boot/boot.ipxe`
    /// (discovery of unenrolled machines).
    Inspect,
}

/// The DHCP server (`[dhcp]`, see [`crate::dhcp`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpConfig {
    /// Serve DHCP.
    pub enabled: bool,
    /// The interface served (SO_BINDTODEVICE).
    pub interface: String,
    /// This host's address on the interface (server identifier, next server).
    pub server_ip: Option<std::net::Ipv4Addr>,
    /// Full or proxy.
    pub mode: DhcpMode,
    /// First address of the pool (full mode).
    pub range_start: Option<std::net::Ipv4Addr>,
    /// Last address of the pool (full mode).
    pub range_end: Option<std::net::Ipv4Addr>,
    /// Subnet mask handed out.
    pub subnet_mask: std::net::Ipv4Addr,
    /// Default gateway handed out.
    pub router: Option<std::net::Ipv4Addr>,
    /// DNS servers handed out.
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Lease time (seconds).
    pub lease_time: u32,
    /// MACs of no enrolled port.
    pub unknown_macs: UnknownMacs,
    /// With `unknown_macs = "inspect"`: how many MACs of no enrolled port
    /// may hold an address at once (offered or leased), so that a neighbour
    /// inventing MACs cannot use up the pool.
    pub unknown_macs_limit: usize,
    /// Base URL iPXE and UEFI HTTP Boot clients fetch `/boot/boot.ipxe`
    /// from; default: `[api] boot_listen`, else the API's address (an
    /// unspecified IP replaced by `server_ip`).
    pub http_url: Option<String>,
    /// TFTP loader for BIOS PXE clients (architecture 0).
    pub bios_loader: String,
    /// TFTP loader for x86-64 UEFI PXE clients (architectures 7 and 9).
    pub uefi_loader: String,
    /// TFTP loader for arm64 UEFI PXE clients (architecture 11).
    pub arm64_loader: String,
    /// Advertise on the interface that the link has no IPv6 router (see
    /// [`crate::dhcp::ra`]): network-boot firmware then stops waiting for
    /// IPv6 autoconfiguration. For IPv4-only provisioning networks only.
    pub advertise_no_ipv6_router: bool,
    /// UDP port of the server (67; tests may change it).
    pub port: u16,
}

impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interface: String::new(),
            server_ip: None,
            mode: DhcpMode::Full,
            range_start: None,
            range_end: None,
            subnet_mask: std::net::Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: Vec::new(),
            lease_time: 3600,
            unknown_macs: UnknownMacs::Ignore,
            unknown_macs_limit: 16,
            http_url: None,
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "snponly.efi".into(),
            arm64_loader: crate::netboot::tftp::GRUBNETAA64.into(),
            advertise_no_ipv6_router: false,
            port: 67,
        }
    }
}

/// The TFTP server (`[tftp]`, see [`crate::tftp`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpConfig {
    /// Serve TFTP.
    pub enabled: bool,
    /// UDP address.
    pub listen: SocketAddr,
    /// Directory served; default [`crate::tftp::DEBIAN_IPXE_DIR`].
    pub root: Option<std::path::PathBuf>,
    /// Transfers at once.
    pub max_transfers: usize,
    /// Retransmission interval when the client sets no `timeout` option
    /// (milliseconds).
    pub timeout_ms: u64,
    /// Retransmissions of one block (or window) before the transfer is
    /// abandoned.
    pub retries: u32,
    /// Longest a whole transfer may take (seconds).
    pub transfer_timeout: u64,
    /// The arm64 network GRUB served as `grubnetaa64.efi`; default
    /// [`crate::netboot::tftp::DEBIAN_GRUBNETAA64`] when it exists.
    pub grub_arm64: Option<std::path::PathBuf>,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            root: None,
            max_transfers: 64,
            timeout_ms: 1000,
            retries: 5,
            transfer_timeout: 300,
            grub_arm64: None,
        }
    }
}

/// Ironic's `auth_strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AuthStrategy {
    /// No authentication: every caller is a system administrator.
    #[default]
    #[serde(rename = "noauth")]
    NoAuth,
    /// HTTP Basic against an htpasswd file.
    #[serde(rename = "http_basic")]
    HttpBasic,
    /// Keystone tokens.
    #[serde(rename = "keystone")]
    Keystone,
}

/// Authentication of API clients (see [`crate::auth`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The strategy.
    pub strategy: AuthStrategy,
    /// Allow `noauth` on a non-loopback listen address.
    pub allow_noauth_on_network: bool,
    /// `http_basic`: the htpasswd file (bcrypt entries).
    pub htpasswd_file: Option<std::path::PathBuf>,
    /// `http_basic`: roles and scope per user (Ingot's own; Ironic makes
    /// every http_basic user an administrator, and so do we for users not
    /// listed here).
    pub users: std::collections::BTreeMap<String, UserScope>,
    /// The project whose `service` role acts as a system member (Ironic's
    /// `rule:service_role`).
    pub service_project_name: String,
    /// `keystone`: how to reach Keystone.
    pub keystone: KeystoneConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            strategy: AuthStrategy::NoAuth,
            allow_noauth_on_network: false,
            htpasswd_file: None,
            users: Default::default(),
            service_project_name: "service".into(),
            keystone: KeystoneConfig::default(),
        }
    }
}

/// Roles and scope of an `http_basic` user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserScope {
    /// Role names (`admin`, `member`, `reader`, `manager`, `service`).
    pub roles: Vec<String>,
    /// Project ID for project scope; none for system scope.
    pub project: Option<String>,
    /// Project name (for `service_project_name`); defaults to the ID.
    pub project_name: Option<String>,
}

/// How the coordinator reaches Keystone and logs in to it.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeystoneConfig {
    /// Keystone's v3 URL (`http://keystone:5000/v3`).
    pub auth_url: String,
    /// What 401s tell clients to authenticate against; default: `auth_url`.
    pub www_authenticate_uri: Option<String>,
    /// The service user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Its domain.
    pub user_domain_name: String,
    /// The project the service token is scoped to.
    pub project_name: String,
    /// That project's domain.
    pub project_domain_name: String,
    /// Longest a validated token is remembered (seconds).
    pub cache_seconds: u64,
    /// Timeout of one request to Keystone (milliseconds).
    pub timeout_ms: u64,
}

impl std::fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"***")
            .field("project_name", &self.project_name)
            .finish_non_exhaustive()
    }
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        Self {
            auth_url: String::new(),
            www_authenticate_uri: None,
            username: String::new(),
            password: String::new(),
            user_domain_name: "Default".into(),
            project_name: "service".into(),
            project_domain_name: "Default".into(),
            cache_seconds: 300,
            timeout_ms: 5000,
        }
    }
}

/// Limits of the API's HTTP server (see [`crate::http_server`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Time for a request's headers to arrive, and for a kept-alive
    /// connection to stay idle (milliseconds).
    pub header_timeout_ms: u64,
    /// Time for a request's body to arrive (milliseconds); 408 after it.
    pub body_timeout_ms: u64,
    /// Largest request body; 413 above it.
    pub max_body_bytes: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Requests one connection serves before it is closed.
    pub max_requests_per_connection: u64,
    /// PEM certificate chain: with `tls_key_file`, the API serves HTTPS.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// A plain-HTTP listener that serves only `/boot/*` (iPXE scripts,
    /// kernel and ramdisk, which hold no tenant data), for firmware whose
    /// iPXE has no HTTPS while the API itself is HTTPS.
    pub boot_listen: Option<SocketAddr>,
}

impl ApiConfig {
    /// True when the API serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 20_000,
            body_timeout_ms: 30_000,
            max_body_bytes: 2 * 1024 * 1024,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_requests_per_connection: 1000,
            tls_cert_file: None,
            tls_key_file: None,
            boot_listen: None,
        }
    }
}

/// The periodic power-state sync (Ironic's `sync_power_state_interval`,
/// `sync_power_state_workers`, `power_state_sync_max_retries`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerSyncConfig {
    /// Time between passes (milliseconds); 0 turns the sync off.
    pub interval_ms: u64,
    /// Nodes whose power state is read at once.
    pub workers: usize,
    /// Consecutive failed reads after which a node goes into maintenance.
    pub max_retries: u32,
    /// How often nodes the sync put into maintenance (`fault = "power
    /// failure"`) are read again and, when they answer, taken out of it
    /// (milliseconds; Ironic's `power_failure_recovery_interval`); 0: never.
    pub recovery_interval_ms: u64,
}

impl Default for PowerSyncConfig {
    fn default() -> Self {
        Self {
            interval_ms: 120_000,
            workers: 100,
            max_retries: 3,
            recovery_interval_ms: 300_000,
        }
    }
}

/// The image cache: source images downloaded once, verified, and served to
/// agents from `/images/<key>` with per-node signed URLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Where cached images live; no directory, no cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Base URL agents download from.
    pub url: Option<String>,
    /// Cache every image (otherwise only nodes with
    /// `instance_info.image_download_source = "local"`, Ironic's setting).
    pub always: bool,
    /// How long a signed image URL handed to an agent stays valid (seconds).
    pub url_ttl: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            url: None,
            always: false,
            url_ttl: 3600,
        }
    }
}

/// How the coordinator authenticates to Glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlanceAuthType {
    /// No credentials (a Glance without Keystone, or behind a proxy).
    #[default]
    None,
    /// `X-Auth-Token` with the configured `token`.
    Token,
    /// A token of the `[auth.keystone]` service user, renewed before it
    /// expires.
    Password,
}

/// Glance (`[glance]`): where images named by UUID come from.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlanceConfig {
    /// Glance's URL (`http://glance:9292`); none: Glance images are refused.
    pub endpoint: Option<String>,
    /// How to authenticate.
    pub auth_type: GlanceAuthType,
    /// The token of `auth_type = "token"`.
    pub token: Option<String>,
    /// Timeout of one request (milliseconds); the image download has none
    /// beyond the connection's.
    pub timeout_ms: u64,
}

impl Default for GlanceConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            auth_type: GlanceAuthType::None,
            token: None,
            timeout_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for GlanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlanceConfig")
            .field("endpoint", &self.endpoint)
            .field("auth_type", &self.auth_type)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Config {
    /// The base URL agents reach the coordinator at.
    pub fn agent_base_url(&self) -> String {
        self.images
            .url
            .clone()
            .or_else(|| self.boot.api_url.clone())
            .unwrap_or_else(|| self.api_url())
    }

    /// The API's own URL: `http(s)://<listen>`.
    pub fn api_url(&self) -> String {
        let scheme = if self.api.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }
}

/// The default `hash_partition_exponent`: 2^10 points per coordinator.
/// With Ironic's 2^5, three coordinators' shares of a fleet can be 40 %
/// off a third, and 20 % with 2^7; with 2^10 each holds a third ±10 %
/// whatever the names (the ring's tests). The ring stays small: 16 bytes
/// a point.
pub const DEFAULT_HASH_PARTITION_EXPONENT: u32 = 10;

/// `[conductor]`: how the coordinators sharing one database keep track of
/// each other (Ironic's `[conductor] heartbeat_interval`,
/// `heartbeat_timeout` and `[DEFAULT] hash_ring_reset_interval`,
/// `hash_partition_exponent`); docs/ha.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConductorConfig {
    /// Seconds between this coordinator's heartbeats in the database.
    pub heartbeat_interval: u64,
    /// Seconds without a heartbeat after which a coordinator counts as
    /// dead: its reservations are released and its nodes adopted. A
    /// coordinator that cannot renew its heartbeat stops acting on nodes
    /// after three quarters of this.
    pub heartbeat_timeout: u64,
    /// Seconds between refreshes of the hash ring (also refreshed at once
    /// when a member joins or leaves cleanly).
    pub hash_ring_reset_interval: u64,
    /// 2^N points per coordinator on the hash ring (at most 16).
    pub hash_partition_exponent: u32,
    /// How many entries of node history each node keeps; older ones are
    /// deleted as new ones come (Ironic's option of the same name, default
    /// 300).
    pub node_history_max_entries: u32,
    /// How many nodes this coordinator starts work on at once: the start of
    /// an inspection, cleaning or deploy (reserving the node, its switch
    /// ports, boot device and power), a tear-down, a verify or a power
    /// request. More wait their turn, in order. Driving an agent that
    /// heartbeats never waits for this, so agents are answered at once even
    /// while thousands of nodes start. At least 1.
    pub max_concurrent_starts: usize,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: 10,
            heartbeat_timeout: 60,
            hash_ring_reset_interval: 15,
            hash_partition_exponent: DEFAULT_HASH_PARTITION_EXPONENT,
            node_history_max_entries: 300,
            max_concurrent_starts: 50,
        }
    }
}

/// Where the ramdisk is and how it boots.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootConfig {
    /// The agent kernel, served at `/boot/vmlinuz`.
    pub kernel: Option<std::path::PathBuf>,
    /// The agent initramfs, served at `/boot/initramfs.img`.
    pub initramfs: Option<std::path::PathBuf>,
    /// The coordinator URL agents use (`ingot.api=`); default: the URL the
    /// iPXE request came in on.
    pub api_url: Option<String>,
    /// Extra kernel parameters.
    pub kernel_params: String,
    /// A PEM CA certificate agents trust for the coordinator's HTTPS
    /// (`ingot.ca_b64=` on the ramdisk's kernel line), when the API's
    /// certificate is not signed by a CA the ramdisk already has.
    pub agent_ca_file: Option<std::path::PathBuf>,
    /// Deploy kernel and ramdisk per CPU architecture (`[boot.by_arch.<arch>]`,
    /// keys such as `aarch64`/`arm64`, `x86_64`), chosen by the node's
    /// `properties.cpu_arch` (see [`crate::netboot`]).
    pub by_arch: std::collections::BTreeMap<String, ArchFiles>,
}

/// One architecture's deploy files (`[boot.by_arch.<arch>]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchFiles {
    /// Its agent kernel, served at `/boot/<arch>/vmlinuz`.
    pub kernel: Option<std::path::PathBuf>,
    /// Its agent initramfs, served at `/boot/<arch>/initramfs.img`.
    pub initramfs: Option<std::path::PathBuf>,
    /// Its kernel parameters instead of `[boot] kernel_params` (the serial
    /// console is `ttyS0` on x86_64, `ttyAMA0` on arm64 servers and QEMU virt).
    pub kernel_params: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6385)),
            database: "sqlite://ingot-coordinator.db".into(),
            database_max_connections: None,
            conductor_name: "ingot".into(),
            secrets_key_file: None,
            conductor_group: String::new(),
            conductor: ConductorConfig::default(),
            heartbeat_timeout: 30,
            deploy_callback_timeout: 1800,
            clean_callback_timeout: 1800,
            inspect_wait_timeout: 1800,
            check_interval_ms: 5000,
            automated_clean: true,
            secure_erase: false,
            agent_command_timeout: 60,
            fast_track: false,
            fast_track_timeout: 300,
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            boot: BootConfig::default(),
            images: ImagesConfig::default(),
            glance: GlanceConfig::default(),
            power_sync: PowerSyncConfig::default(),
            tftp: TftpConfig::default(),
            dhcp: DhcpConfig::default(),
            switches: Default::default(),
            networks: Default::default(),
            network_roles: Default::default(),
            metrics: MetricsConfig::default(),
            network_sync: Default::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_listener_is_off_unless_configured() {
        assert_eq!(Config::default().metrics.listen, None);
        let c: Config = toml::from_str("[metrics]\nlisten = \"127.0.0.1:9608\"\n\n[api]\n")
            .expect("a valid [metrics] section");
        assert_eq!(
            c.metrics.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9608)))
        );
        assert!(toml::from_str::<Config>("[metrics]\nport = 1\n").is_err());
    }

    #[test]
    fn deploy_files_by_architecture() {
        let c: Config = toml::from_str(
            "[boot]\nkernel = \"/k/vmlinuz\"\n[boot.by_arch.aarch64]\nkernel = \"/a/vmlinuz\"\ninitramfs = \"/a/initramfs.img\"\n",
        )
        .expect("a valid [boot.by_arch] section");
        let a = &c.boot.by_arch["aarch64"];
        assert_eq!(a.kernel.as_deref(), Some(Path::new("/a/vmlinuz")));
        assert_eq!(a.initramfs.as_deref(), Some(Path::new("/a/initramfs.img")));
        assert!(toml::from_str::<Config>("[boot.by_arch.aarch64]\nramdisk = \"/x\"\n").is_err());
    }
}
