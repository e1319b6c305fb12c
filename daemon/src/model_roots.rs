//! Which files `Models.AddFromPath` may read: only those under the directories given
//! with `--model-root`. AddFromPath makes the daemon open a path a client names, so
//! without this rule any caller could make it read (and try to load) any file the
//! daemon's user can read. The requested path is canonicalized (every `..` and symlink
//! resolved) and must then lie under a canonicalized root, so neither `root/../x` nor a
//! symlink inside a root that points outside it gets through. Without roots,
//! AddFromPath is refused. `--add-model` at start-up is the admin's own choice and is
//! not checked here.

use crate::error::{AccessError, ApiError};
use anyhow::{bail, Context};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct ModelRoots {
    /// Canonical forms of the configured roots.
    roots: Vec<PathBuf>,
}

impl ModelRoots {
    /// Canonicalizes the configured roots; each must be an existing directory.
    pub fn open(configured: &[PathBuf]) -> anyhow::Result<ModelRoots> {
        let mut roots = Vec::with_capacity(configured.len());
        for root in configured {
            let canonical = root.canonicalize().with_context(|| format!("--model-root {}", root.display()))?;
            if !canonical.is_dir() {
                bail!("--model-root {}: not a directory", root.display());
            }
            roots.push(canonical);
        }
        Ok(ModelRoots { roots })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The canonical path of `requested` when it is a file under a root. Runs file
    /// system calls: call it off the async threads.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, AccessError> {
        if self.roots.is_empty() {
            return Err(AccessError::PermissionDenied(
                "AddFromPath is turned off: the daemon was started without --model-root DIR; \
                 upload the file instead (layerlens models add, or add_model in Python)"
                    .to_string(),
            ));
        }
        if requested.is_empty() {
            return Err(ApiError::bad_input("AddFromPath needs a path").into());
        }
        let path = Path::new(requested);
        if !path.is_absolute() {
            return Err(ApiError::bad_input(format!(
                "AddFromPath needs an absolute path on the daemon's machine, under {}; got {requested}",
                self.describe_roots()
            ))
            .into());
        }
        match path.canonicalize() {
            Ok(canonical) => {
                if !self.contains(&canonical) {
                    let resolved = if canonical != path { format!(" (it resolves to {})", canonical.display()) } else { String::new() };
                    return Err(self.outside(requested, &resolved));
                }
                if !canonical.is_file() {
                    return Err(ApiError::bad_input(format!("{requested} is not a regular file")).into());
                }
                Ok(canonical)
            }
            // Say "no such file" only for paths that would be allowed, so a caller
            // cannot probe which files exist elsewhere on the machine.
            Err(error) if self.contains(&lexically_normal(path)) => {
                if error.kind() == std::io::ErrorKind::NotFound {
                    Err(ApiError::not_found(format!("no file at {requested}")).into())
                } else {
                    Err(ApiError::bad_input(format!("cannot read {requested}: {error}")).into())
                }
            }
            Err(_) => Err(self.outside(requested, "")),
        }
    }

    fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    fn outside(&self, requested: &str, resolved: &str) -> AccessError {
        AccessError::PermissionDenied(format!(
            "{requested}{resolved} is outside the model roots: AddFromPath only reads files under {}",
            self.describe_roots()
        ))
    }

    fn describe_roots(&self) -> String {
        self.roots.iter().map(|root| root.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// `path` with `.` dropped and each `..` removing the component before it, without
/// touching the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<PathBuf, AccessError>) -> String {
        match result {
            Ok(path) => format!("ok {}", path.file_name().unwrap().to_string_lossy()),
            Err(AccessError::PermissionDenied(_)) => "denied".to_string(),
            Err(AccessError::Unauthenticated(_)) => "unauthenticated".to_string(),
            Err(AccessError::Api(error)) => format!("{:?}", error.kind),
        }
    }

    #[test]
    fn resolves_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/model.pt"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.pt"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.pt"), root.join("link.pt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/model.pt"), root.join("inner-link.pt")).unwrap();
        let roots = ModelRoots::open(std::slice::from_ref(&root)).unwrap();
        let at = |relative: &str| format!("{}/{relative}", root.display());
        let cases: Vec<(String, &str)> = vec![
            (at("sub/model.pt"), "ok model.pt"),
            (at("sub/../sub/./model.pt"), "ok model.pt"),
            (at("inner-link.pt"), "ok model.pt"),
            (at("../secret.pt"), "denied"),
            (at("link.pt"), "denied"),
            (at("missing.pt"), "NotFound"),
            (at("../missing.pt"), "denied"),
            ("/etc/passwd".to_string(), "denied"),
            (at("sub"), "BadInput"),
            ("sub/model.pt".to_string(), "BadInput"),
            (String::new(), "BadInput"),
        ];
        for (requested, expected) in cases {
            assert_eq!(kind(roots.resolve(&requested)), expected, "{requested}");
        }
        assert_eq!(kind(ModelRoots::default().resolve(&at("sub/model.pt"))), "denied");
    }
}
