//! Random numbers from the kernel (`getrandom(2)`): command UUIDs and
//! heartbeat jitter. No userspace generator to seed, which matters as PID 1.

/// Fills `buf` from the kernel's generator, falling back to the clock.
pub fn fill(buf: &mut [u8]) {
    // SAFETY: getrandom writes at most `buf.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).ok() != Some(buf.len()) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
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
