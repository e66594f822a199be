//! Random numbers from the kernel (`getrandom(2)`) for what is not a secret:
//! DHCP transaction ids, GPT partition GUIDs, command UUIDs and jitter. No
//! userspace generator to seed, which matters as PID 1.
//!
//! None of these may wait for the kernel's generator to be initialised: on
//! a machine without a hardware RNG the kernel needs about half a second of
//! timer jitter for that after boot, and the agent's first DHCP request must
//! not wait for it. They use `GRND_INSECURE`, which never blocks. Secrets
//! (the TLS key) use the blocking generator, through their crates; see
//! [`prime_kernel_generator`].

/// Fills `buf` from the kernel's generator without ever blocking; falls back
/// to `/dev/urandom` (kernels before 5.6), then to the clock.
pub fn fill(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_INSECURE) };
    if usize::try_from(n).ok() == Some(buf.len()) {
        return;
    }
    let urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, buf));
    if urandom.is_ok() {
        return;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
    }
}

/// Starts the kernel's generator initialising now, on a thread of its own,
/// instead of when the TLS key is generated. A blocking `getrandom(2)` makes
/// the kernel gather timer jitter until the generator is initialised (at
/// once where the CPU has RDRAND/RNDR or a bootloader seed); done while
/// modules load and DHCP runs, that wait is off the way to the first
/// heartbeat.
pub fn prime_kernel_generator() {
    let spawned = std::thread::Builder::new()
        .name("entropy".into())
        .spawn(|| {
            let started = std::time::Instant::now();
            let mut b = [0u8; 1];
            // SAFETY: getrandom writes at most one byte into the live buffer.
            let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, 0) };
            let seconds = started.elapsed().as_secs_f64();
            if n == 1 {
                tracing::debug!(seconds, "the kernel's random generator is initialised");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the entropy thread");
    }
}

/// A random version 4 UUID in canonical form.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A uniformly distributed float in `[lo, hi)`.
pub fn uniform(lo: f64, hi: f64) -> f64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    let x = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * x
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuid_shape() {
        let u = super::uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let x = super::uniform(0.3, 0.6);
        assert!((0.3..0.6).contains(&x));
    }
}
