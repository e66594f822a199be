pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("the wipe benchmark is not written yet")
}
