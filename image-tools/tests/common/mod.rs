//! The image fixtures made by `fixtures/gen.sh` (qemu-img, qemu-io, zstd,
//! gzip, xz), generated once per target directory and shared by the tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fixture folder, generated on first use.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-fixtures");
        if !dir.join(".complete").exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gen.sh");
            let st = std::process::Command::new("bash")
                .arg(script)
                .arg(&dir)
                .status()
                .expect("run gen.sh");
            assert!(st.success(), "fixture generation failed");
        }
        dir
    })
}

/// The path of fixture `name`.
pub fn fx(name: &str) -> String {
    fixtures().join(name).display().to_string()
}
