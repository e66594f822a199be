//! `ingot-bmc-fleet --count N [--base-port P] [--user U] [--password P]
//! [--control-port C]`: serves N simulated IPMI 2.0 BMCs on 127.0.0.1, ports
//! P..P+N (free ports when P is 0), prints `ready <count> <first-port>` (and
//! ` <control-port>` with `--control-port`) and runs until killed. With
//! `--control-port` (0: a free port), the control endpoint of
//! `ingot_bmc_fleet::control` answers on 127.0.0.1:C. Needs a
//! file-descriptor limit above N (`ulimit -n`).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut count = 1usize;
    let mut base_port = 0u16;
    let mut control_port = None;
    let mut user = String::from("admin");
    let mut password = String::from("password");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--count" => count = value()?.parse()?,
            "--base-port" => base_port = value()?.parse()?,
            "--control-port" => control_port = Some(value()?.parse::<u16>()?),
            "--user" => user = value()?,
            "--password" => password = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let fleet = ingot_bmc_fleet::start(count, base_port, &user, &password).await?;
        let first = fleet.ports.first().copied().unwrap_or(0);
        let mut ready = format!("ready {count} {first}");
        if let Some(port) = control_port {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
            let port = listener.local_addr()?.port();
            ingot_bmc_fleet::control::serve(listener, fleet.bmcs())?;
            ready.push_str(&format!(" {port}"));
        }
        let mut out = std::io::stdout();
        writeln!(out, "{ready}")?;
        out.flush()?;
        std::future::pending::<()>().await;
        drop(fleet);
        Ok(())
    })
}
