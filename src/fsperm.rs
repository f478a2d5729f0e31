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
///
/// An existing file is never opened here, only changed by its path: on
/// POSIX, closing any descriptor of a file drops every lock the process
/// holds on it, SQLite's included, and another process could then reset
/// the write-ahead log under a reader of this one.
pub fn private_file(file: &Path) -> io::Result<()> {
    if !file.exists() {
        let created = OpenOptions::new().write(true).create_new(true).mode(0o600).open(file);
        match created {
            Ok(_) => {}
            // Made meanwhile by another process: it is there now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    fs::set_permissions(file, Permissions::from_mode(0o600))
}

/// Makes `dir` (created if missing) and everything in it private: folders
/// 0700, files 0600. For a data folder another program fills (the Lbasedb
/// storage makes its files with the process's umask), so that an
/// installation made before this rule is tightened on its next start.
pub fn private_tree(dir: &Path) -> io::Result<()> {
    private_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            private_tree(&entry.path())?;
        } else if kind.is_file() {
            fs::set_permissions(entry.path(), Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}
