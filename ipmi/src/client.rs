//! The tokio side of IPMI: [`Connection`] runs a [`session::Handshake`]
//! and then requests of the [`session::Session`] over a connected UDP socket
//! with [`udp::exchange`]'s retries; [`IpmiClient`] keeps one session per BMC
//! (opened on first use and reused; requests to one BMC serialised and
//! spaced by a minimum interval, as BMCs crash when polled too often) and
//! has the chassis commands: status and control, Get Device ID, and
//! Set/Get System Boot Options parameter 5.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::chassis::{self, BootDevice, ChassisControl, DeviceId};
use crate::message::{IpmiResponse, netfn};
use crate::session::{self, Handshake, Progress, Request};
use crate::udp::{self, Exchange, Retry, UdpError};
use crate::{BmcConfig, IpmiError};

/// Timeouts, retries and pacing.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wait for the first answer to a request; doubled per retry up to 4x.
    pub timeout: Duration,
    /// Retransmissions after the first attempt.
    pub retries: u32,
    /// Pause before the first retransmission; doubled per retry.
    pub backoff: Duration,
    /// Minimum spacing of requests to one BMC.
    pub min_interval: Duration,
    /// Idle time after which a session is assumed expired and reopened.
    pub session_idle: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(1000),
            retries: 3,
            backoff: Duration::from_millis(200),
            min_interval: Duration::from_millis(100),
            session_idle: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// The retransmission schedule of one request.
    pub fn retry(&self) -> Retry {
        Retry {
            timeout: self.timeout,
            max_timeout: self.timeout.saturating_mul(4),
            retries: self.retries,
            backoff: self.backoff,
        }
    }
}

impl From<UdpError> for IpmiError {
    fn from(e: UdpError) -> Self {
        match e {
            UdpError::Timeout { .. } => Self::Timeout,
            UdpError::Unreachable { error, .. } => Self::Unreachable(error),
            UdpError::Io(e) => Self::Io(e),
        }
    }
}

/// One handshake step as an [`Exchange`]: `Some(())` once established.
struct HandshakeStep<'a>(&'a mut Handshake);

impl Exchange for HandshakeStep<'_> {
    type Output = Option<()>;
    type Error = IpmiError;

    fn datagram(&mut self) -> Result<Vec<u8>, IpmiError> {
        self.0.datagram()
    }

    fn receive(&mut self, p: &[u8]) -> Option<Result<Option<()>, IpmiError>> {
        match self.0.receive(p) {
            Ok(Progress::Ignored) => None,
            Ok(Progress::Next) => Some(Ok(None)),
            Ok(Progress::Established) => Some(Ok(Some(()))),
            Err(e) => Some(Err(e)),
        }
    }
}

/// One request of an established session as an [`Exchange`].
struct RequestExchange<'a> {
    session: &'a mut session::Session,
    request: Request,
}

impl Exchange for RequestExchange<'_> {
    type Output = IpmiResponse;
    type Error = IpmiError;

    fn datagram(&mut self) -> Result<Vec<u8>, IpmiError> {
        self.session.datagram(&self.request)
    }

    fn receive(&mut self, p: &[u8]) -> Option<Result<IpmiResponse, IpmiError>> {
        self.session.response(&self.request, p).map(Ok)
    }
}

/// An established session on its connected socket.
#[derive(Debug)]
pub struct Connection {
    sock: UdpSocket,
    session: session::Session,
    timing: Timing,
    /// When the session last got an answer (BMCs drop idle sessions).
    pub last_used: Instant,
}

impl Connection {
    /// Opens a session: resolves and connects, then runs the RMCP+ or the
    /// IPMI 1.5 handshake, as `cfg.version` says, and raises the privilege.
    pub async fn open(cfg: &BmcConfig, timing: &Timing) -> Result<Self, IpmiError> {
        let (sock, _) = udp::connect(&cfg.host, cfg.port).await?;
        let mut hs = Handshake::new(cfg)?;
        let retry = timing.retry();
        loop {
            let step = udp::exchange(&sock, &retry, &mut HandshakeStep(&mut hs)).await;
            match step.map_err(|e| hs.no_answer(e))? {
                Some(()) => break,
                None => continue,
            }
        }
        let session = hs
            .into_session()
            .ok_or_else(|| IpmiError::Protocol("handshake ended without a session".into()))?;
        tracing::debug!(host = %cfg.host, port = cfg.port, version = ?cfg.version, "ipmi session open");
        Ok(Self {
            sock,
            session,
            timing: timing.clone(),
            last_used: Instant::now(),
        })
    }

    /// Sends one IPMI request in the session and returns the response.
    pub async fn request(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<IpmiResponse, IpmiError> {
        let request = self.session.request(netfn, cmd, data);
        let mut x = RequestExchange {
            session: &mut self.session,
            request,
        };
        let r = udp::exchange(&self.sock, &self.timing.retry(), &mut x).await?;
        self.last_used = Instant::now();
        Ok(r)
    }

    /// The BMC's session ID.
    pub fn bmc_session_id(&self) -> u32 {
        self.session.bmc_session_id()
    }

    /// Sends one packet of another RMCP+ payload type (SOL) in the session.
    pub async fn send_payload(
        &mut self,
        payload_type: u8,
        payload: &[u8],
    ) -> Result<(), IpmiError> {
        let p = self.session.payload_datagram(payload_type, payload)?;
        match self.sock.send(&p).await {
            Ok(_) => Ok(()),
            Err(e) if udp::is_icmp_error(&e) => Err(IpmiError::Unreachable(e.to_string())),
            Err(e) => Err(IpmiError::Io(e.to_string())),
        }
    }

    /// Decodes a received packet of this session (see [`session::Session::decode`]).
    pub fn decode(&self, p: &[u8]) -> Option<(u8, Vec<u8>)> {
        self.session.decode(p)
    }

    /// The session's connected socket (for receiving unsolicited packets).
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Limits retransmissions of later requests (for best-effort goodbyes).
    pub fn set_retries(&mut self, retries: u32) {
        self.timing.retries = retries;
    }

    /// Closes the session on the BMC (best effort, one attempt).
    pub async fn close(mut self) {
        self.timing.retries = 0;
        let request = self.session.close_request();
        let mut x = RequestExchange {
            session: &mut self.session,
            request,
        };
        let _ = udp::exchange(&self.sock, &self.timing.retry(), &mut x).await;
    }

    /// Idle time since the last answer.
    pub fn idle(&self) -> Duration {
        self.last_used.elapsed()
    }
}

#[derive(Debug, Default)]
struct BmcSlot {
    session: Option<Connection>,
    last_request: Option<Instant>,
}

/// A pool of RMCP+ sessions, one per BMC, with per-BMC pacing.
#[derive(Debug, Default)]
pub struct IpmiClient {
    timing: Timing,
    slots: Mutex<HashMap<BmcConfig, Arc<tokio::sync::Mutex<BmcSlot>>>>,
    opened: AtomicU64,
}

impl IpmiClient {
    /// A client with the given timing.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            slots: Mutex::default(),
            opened: AtomicU64::new(0),
        }
    }

    /// How many sessions this client has opened (for tests and metrics).
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn slot(&self, cfg: &BmcConfig) -> Arc<tokio::sync::Mutex<BmcSlot>> {
        let mut g = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.entry(cfg.clone()).or_default().clone()
    }

    /// Sends a raw command and returns the response data after a zero
    /// completion code. Opens (or reopens) the BMC's session as needed; a
    /// request that times out in an existing session is retried once in a
    /// new session.
    pub async fn raw(
        &self,
        cfg: &BmcConfig,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        name: &'static str,
    ) -> Result<Vec<u8>, IpmiError> {
        let slot = self.slot(cfg);
        let mut slot = slot.lock().await;
        for fresh_retry in [false, true] {
            if let Some(last) = slot.last_request {
                let next = last + self.timing.min_interval;
                tokio::time::sleep_until(next.into()).await;
            }
            slot.last_request = Some(Instant::now());
            if slot
                .session
                .as_ref()
                .is_some_and(|s| s.idle() > self.timing.session_idle)
            {
                if let Some(old) = slot.session.take() {
                    old.close().await;
                }
            }
            let reused = slot.session.is_some();
            let session = match &mut slot.session {
                Some(s) => s,
                None => {
                    let s = Connection::open(cfg, &self.timing).await?;
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    slot.session.insert(s)
                }
            };
            match session.request(netfn, cmd, data).await {
                Ok(r) => return r.completed(name).map(|r| r.data),
                Err(IpmiError::Timeout | IpmiError::Unreachable(_)) if reused && !fresh_retry => {
                    tracing::info!(host = %cfg.host, port = cfg.port, command = name,
                        "ipmi session stopped answering; opening a new one");
                    slot.session = None;
                }
                Err(e) => {
                    slot.session = None;
                    return Err(e);
                }
            }
        }
        Err(IpmiError::Timeout)
    }

    /// Closes every open session (best effort).
    pub async fn close_all(&self) {
        let slots: Vec<_> = {
            let g = match self.slots.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.values().cloned().collect()
        };
        for s in slots {
            if let Some(sess) = s.lock().await.session.take() {
                sess.close().await;
            }
        }
    }

    /// Get Chassis Status: whether the system power is on.
    pub async fn power_is_on(&self, cfg: &BmcConfig) -> Result<bool, IpmiError> {
        let d = self
            .raw(
                cfg,
                netfn::CHASSIS,
                chassis::GET_CHASSIS_STATUS,
                &[],
                "Get Chassis Status",
            )
            .await?;
        chassis::parse_power_on(&d)
    }

    /// Chassis Control.
    pub async fn chassis_control(
        &self,
        cfg: &BmcConfig,
        action: ChassisControl,
    ) -> Result<(), IpmiError> {
        self.raw(
            cfg,
            netfn::CHASSIS,
            chassis::CHASSIS_CONTROL,
            &[action as u8],
            "Chassis Control",
        )
        .await
        .map(|_| ())
    }

    /// Get Device ID.
    pub async fn device_id(&self, cfg: &BmcConfig) -> Result<DeviceId, IpmiError> {
        let d = self
            .raw(
                cfg,
                netfn::APP,
                chassis::GET_DEVICE_ID,
                &[],
                "Get Device ID",
            )
            .await?;
        DeviceId::parse(&d)
    }

    /// Set System Boot Options parameter 5: boot device, next boot only or
    /// persistent, and the UEFI boot type flag.
    pub async fn set_boot_device(
        &self,
        cfg: &BmcConfig,
        device: BootDevice,
        persistent: bool,
        uefi: bool,
    ) -> Result<(), IpmiError> {
        let data = chassis::boot_flags(device, persistent, uefi);
        self.raw(
            cfg,
            netfn::CHASSIS,
            chassis::SET_BOOT_OPTIONS,
            &data,
            "Set System Boot Options",
        )
        .await
        .map(|_| ())
    }

    /// Set System Boot Options parameter 3 (boot flag valid bit clearing):
    /// keep the boot flags when the BMC's 60 s timer expires.
    pub async fn disable_boot_timeout(&self, cfg: &BmcConfig) -> Result<(), IpmiError> {
        self.raw(
            cfg,
            netfn::CHASSIS,
            chassis::SET_BOOT_OPTIONS,
            &chassis::BOOT_TIMEOUT_OFF,
            "Set System Boot Options",
        )
        .await
        .map(|_| ())
    }

    /// Get System Boot Options parameter 5: (device, persistent, uefi).
    pub async fn boot_device(
        &self,
        cfg: &BmcConfig,
    ) -> Result<(Option<BootDevice>, bool, bool), IpmiError> {
        let d = self
            .raw(
                cfg,
                netfn::CHASSIS,
                chassis::GET_BOOT_OPTIONS,
                &chassis::GET_BOOT_FLAGS,
                "Get System Boot Options",
            )
            .await?;
        chassis::parse_boot_flags(&d)
    }
}
