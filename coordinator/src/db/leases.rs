//! DHCP leases of the coordinator's DHCP server (full mode).

use std::net::Ipv4Addr;

use sqlx::Row;

use super::{Db, DbError};

/// One address held by one MAC until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client's MAC, lower case with colons.
    pub mac: String,
    /// Milliseconds since the epoch after which the address is free again.
    pub expires_ms: i64,
    /// The host name the client sent (option 12), if any.
    pub hostname: Option<String>,
}

fn lease(r: &sqlx::any::AnyRow) -> Result<Lease, DbError> {
    let ip: String = r.try_get(0)?;
    Ok(Lease {
        ip: ip.parse().map_err(|_| DbError::Damaged {
            path: "dhcp_leases".into(),
            reason: format!("bad address {ip}"),
        })?,
        mac: r.try_get(1)?,
        expires_ms: r.try_get(2)?,
        hostname: r.try_get(3)?,
    })
}

impl Db {
    /// Every lease, expired ones included (the pool is small: one subnet).
    pub async fn list_dhcp_leases(&self) -> Result<Vec<Lease>, DbError> {
        let rows = sqlx::query("SELECT ip, mac, expires_ms, hostname FROM dhcp_leases ORDER BY ip")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(lease).collect()
    }

    /// The lease of `mac`, expired or not.
    pub async fn dhcp_lease_for_mac(&self, mac: &str) -> Result<Option<Lease>, DbError> {
        let row =
            sqlx::query("SELECT ip, mac, expires_ms, hostname FROM dhcp_leases WHERE mac = $1")
                .bind(mac)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(lease).transpose()
    }

    /// Records that `lease.mac` holds `lease.ip`, replacing that MAC's
    /// previous lease and any (expired) lease of that address. The caller
    /// checks first that the address is not held by another MAC.
    pub async fn put_dhcp_lease(&self, l: &Lease) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dhcp_leases WHERE mac = $1 OR ip = $2")
            .bind(&l.mac)
            .bind(l.ip.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO dhcp_leases (ip, mac, expires_ms, hostname) VALUES ($1, $2, $3, $4)",
        )
        .bind(l.ip.to_string())
        .bind(&l.mac)
        .bind(l.expires_ms)
        .bind(l.hostname.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the lease of `mac` (DHCPRELEASE): the row stays, expired, so
    /// the client gets the same address back while nobody else took it.
    pub async fn expire_dhcp_lease(&self, mac: &str, now_ms: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE dhcp_leases SET expires_ms = $1 WHERE mac = $2")
            .bind(now_ms)
            .bind(mac)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
