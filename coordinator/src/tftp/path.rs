//! Mapping a requested file name to a file under the root, refusing every
//! way out of it.

use std::path::{Component, Path, PathBuf};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..`, a drive-like prefix, a backslash or an empty name.
    #[error("name not allowed")]
    Forbidden,
    /// Resolves (through a symbolic link) outside the root.
    #[error("outside the root")]
    Escapes,
    /// Nothing there, or not a regular file.
    #[error("file not found")]
    NotFound,
}

/// Resolves `name` under `root` (which must already be canonical).
///
/// A leading `/` is dropped (PXE firmware often sends `/undionly.kpxe`), so
/// absolute names are relative to the root. `..` is refused outright, and
/// the canonical path must still lie under the root, which catches symbolic
/// links that point out of it. Only regular files are served.
pub fn resolve(root: &Path, name: &str) -> Result<PathBuf, PathError> {
    let rel = name.trim_start_matches('/');
    if rel.is_empty() || rel.contains('\\') {
        return Err(PathError::Forbidden);
    }
    let rel = Path::new(rel);
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Forbidden);
            }
        }
    }
    let full = root.join(rel);
    let canonical = match full.canonicalize() {
        Ok(p) => p,
        Err(_) => return Err(PathError::NotFound),
    };
    if !canonical.starts_with(root) {
        return Err(PathError::Escapes);
    }
    match canonical.metadata() {
        Ok(m) if m.is_file() => Ok(canonical),
        _ => Err(PathError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("in")).unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "sub/f").unwrap(), root.join("sub/f"));
        assert_eq!(resolve(&root, "/sub/f").unwrap(), root.join("sub/f"));
        assert_eq!(resolve(&root, "./sub/./f").unwrap(), root.join("sub/f"));
        assert_eq!(resolve(&root, "in").unwrap(), root.join("sub/f"));
        assert_eq!(resolve(&root, "../secret"), Err(PathError::Forbidden));
        assert_eq!(
            resolve(&root, "sub/../../secret"),
            Err(PathError::Forbidden)
        );
        assert_eq!(resolve(&root, "sub\\..\\f"), Err(PathError::Forbidden));
        assert_eq!(resolve(&root, ""), Err(PathError::Forbidden));
        assert_eq!(resolve(&root, "out"), Err(PathError::Escapes));
        assert_eq!(resolve(&root, "sub"), Err(PathError::NotFound));
        assert_eq!(resolve(&root, "nope"), Err(PathError::NotFound));
    }
}
