//! `ingot-lab`: runs the end-to-end lab (work in progress).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
