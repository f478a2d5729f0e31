//! Files and folders only their owner may read: the data folder holds the
//! user database (password hashes, sessions) and the session key.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) if missing, and makes it 0700. Parents
/// it creates on the way are 0700 too; existing parents are left alone.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Creates `file` empty if missing, and makes it 0600 either way, so an
/// installation made before this rule is tightened on its next start.
pub fn private_file(file: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    fs::set_permissions(file, Permissions::from_mode(0o600))
}
