//! `cargo xtask <task>`: project tasks.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("no tasks yet")
}
