//! Helpers for tests of trainers, the workspace's own and users': whether MNIST is there (tests
//! that need it skip with a note when it is not), and a fresh scratch directory per test.

use std::path::{Path, PathBuf};

use crate::data::{DataError, Dataset, Mnist};

/// Whether MNIST is where [`Mnist::load`] looks (`$MNIST_DIR`, else `../shared/data/mnist`);
/// prints why not when its files are absent, and panics on any other error (a corrupt file
/// must fail a test, not skip it).
pub fn have_mnist() -> bool {
    match Mnist::load_with(Dataset::Mnist, None, false) {
        Ok(_) => true,
        Err(e @ (DataError::MissingDir { .. } | DataError::MissingFile { .. })) => {
            eprintln!("skipping: {e}");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

/// An empty path `glimpse-{prefix}-{name}-{pid}` under the system's temporary directory (what
/// was there is removed), with progress bars off (`GLIMPSE_NO_PROGRESS=1`) for the trainers the
/// test runs.
pub fn scratch_dir(prefix: &str, name: &str) -> PathBuf {
    std::env::set_var("GLIMPSE_NO_PROGRESS", "1");
    let dir = std::env::temp_dir().join(format!("glimpse-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `p` as a command-line argument.
///
/// # Panics
/// If `p` is not UTF-8 (scratch directories are).
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
