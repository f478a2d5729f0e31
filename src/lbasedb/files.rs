//! Open files. The storage keeps every column's file open, one more per
//! feed (its column list) and one for the feed list, and opening the
//! storage opens them all: past the process's open-file limit, a new
//! column fails half made, and a data folder that holds more columns than
//! the limit can never be opened again. So the limit is raised as far as
//! the system allows at start-up, a share of it is kept for connections,
//! the rest is the storage's budget, and new feeds and columns past it are
//! refused; a folder that needs more than the budget is refused at start,
//! with the numbers, rather than half opened.

use std::io;
use std::path::Path;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Files the process needs besides its storage and its connections:
/// the runtime's own (epoll, event fds), the standard streams, logs.
const SPARE: u64 = 64;

/// Raises the soft open-file limit to the hard one (a system's default
/// soft limit, often 1024, is far below what it allows); answers the
/// limit now in force, and what it was.
pub fn raise_open_file_limit() -> (u64, u64) {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(err) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("could not raise the open-file limit from {before}: {err}");
            return (before, before);
        }
    }
    (open_file_limit(), before)
}

/// The soft open-file limit in force.
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How many files the storage may keep open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudget {
    /// The process's open-file limit.
    pub limit: u64,
    /// Kept for connections and the process's own: `connections` plus a
    /// few, but never more than half the limit.
    pub reserved: u64,
}

impl FileBudget {
    /// The budget of a process with `limit` open files that serves up to
    /// `connections` at once.
    pub fn new(limit: u64, connections: u64) -> Self {
        Self { limit, reserved: connections.saturating_add(SPARE).min(limit / 2) }
    }

    /// Files the storage may have open.
    pub fn storage(&self) -> u64 {
        self.limit.saturating_sub(self.reserved)
    }

    /// Why storage of `feeds` feeds and `cols` columns does not fit, if it
    /// does not.
    pub fn refuse(&self, feeds: u64, cols: u64) -> Option<String> {
        let needed = 1 + feeds + cols;
        (needed > self.storage()).then(|| {
            format!(
                "{feeds} feed(s) with {cols} column(s) need {needed} open files, over the \
                 {} this process may use for storage: its open-file limit (RLIMIT_NOFILE) is {}, \
                 of which {} are kept for connections; raise the limit (ulimit -n, \
                 LimitNOFILE= in systemd, --ulimit nofile= in Docker) to at least {}",
                self.storage(),
                self.limit,
                self.reserved,
                needed + self.reserved
            )
        })
    }
}

/// The storage of a data folder does not fit in the open-file limit: a
/// configuration error (restarting changes nothing; raising the limit
/// does), which `lbasedb` exits with as `EX_CONFIG` (78).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TooManyFiles(pub String);

impl TooManyFiles {
    pub fn error(why: String) -> io::Error {
        io::Error::other(Self(why))
    }

    /// Whether `err` is one.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|inner| inner.is::<Self>())
    }
}

/// The exit status of a process that stops on a configuration error
/// (sysexits' `EX_CONFIG`): whoever supervises it should not restart it.
pub const EX_CONFIG: u8 = 78;

/// Feeds and columns in a data folder, counted from its files (a folder per
/// feed, a `<name>.col` file per column) without opening the storage.
pub fn count(data: &Path) -> io::Result<(u64, u64)> {
    let (mut feeds, mut cols) = (0u64, 0u64);
    let entries = match std::fs::read_dir(data) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        feeds += 1;
        for file in std::fs::read_dir(entry.path())? {
            if file?.path().extension().is_some_and(|ext| ext == "col") {
                cols += 1;
            }
        }
    }
    Ok((feeds, cols))
}

/// Whether the storage at `data` can be opened within `budget`: the reason
/// it cannot, with the numbers and the way out.
pub fn preflight(data: &Path, budget: &FileBudget) -> Result<(), String> {
    let (feeds, cols) = count(data)
        .map_err(|err| format!("cannot read the data folder {}: {err}", data.display()))?;
    match budget.refuse(feeds, cols) {
        Some(why) => Err(format!("the Lbasedb data folder {}: {why}", data.display())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_room_for_connections_and_says_how_to_raise_it() {
        let budget = FileBudget::new(20_000, 1024);
        assert_eq!(budget.reserved, 1088);
        assert_eq!(budget.storage(), 18_912);
        assert!(budget.refuse(10, 18_901).is_none());
        let why = budget.refuse(10, 18_902).unwrap();
        assert!(
            why.contains("20000") && why.contains("ulimit -n") && why.contains("20001"),
            "{why}"
        );
        // A small limit still leaves the storage half.
        let small = FileBudget::new(256, 1024);
        assert_eq!(small.storage(), 128);
    }

    #[test]
    fn a_data_folder_is_counted_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(count(&dir.path().join("missing")).unwrap(), (0, 0));
        std::fs::write(dir.path().join("feed.list"), b"").unwrap();
        for (feed, cols) in [("a", 3), ("b.c", 0)] {
            let folder = dir.path().join(feed);
            std::fs::create_dir(&folder).unwrap();
            std::fs::write(folder.join("col.list"), b"").unwrap();
            for i in 0..cols {
                std::fs::write(folder.join(format!("x{i}.col")), b"").unwrap();
            }
        }
        assert_eq!(count(dir.path()).unwrap(), (2, 3));
        let tight = FileBudget { limit: 100, reserved: 94 };
        assert!(preflight(dir.path(), &tight).is_ok());
        let tighter = FileBudget { limit: 100, reserved: 95 };
        assert!(preflight(dir.path(), &tighter).unwrap_err().contains("need 6 open files"));
    }
}
