//! The database files are private to hubauth's user: they hold the signing keys, every session and
//! the sealed upstream tokens. SQLite gives its `-wal` and `-shm` files the database file's mode,
//! so creating the database 0600 covers them; files an older version (or a restore) left readable
//! by others are tightened, and the log says so.

use std::path::Path;

use anyhow::Context;

/// Creates `dir` (and missing parents) for hubauth's user only.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Makes sure the database at `db` and its companions exist only as files others cannot read.
pub fn prepare_private_database(db: &Path) -> anyhow::Result<()> {
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        create_private_dir(parent)?;
    }
    create_private_file(db)?;
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for file in [db.to_path_buf(), db.with_file_name(format!("{name}-wal")), db.with_file_name(format!("{name}-shm"))] {
        tighten(&file)?;
    }
    Ok(())
}

/// An empty file is a new database to SQLite; made here first, it never exists world-readable.
#[cfg(unix)]
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create SQLite database {}", path.display())),
    }
}

#[cfg(not(unix))]
fn create_private_file(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Removes group and other permissions from an existing file.
#[cfg(unix)]
fn tighten(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).with_context(|| {
        format!(
            "{} can be read by other users (mode {mode:o}) and hubauth cannot change that; \
             make it owned by hubauth's user and run `chmod 600` on it",
            path.display()
        )
    })?;
    tracing::warn!(file = %path.display(), was = format!("{mode:o}"), "database file was readable by other users; now 600");
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path) -> anyhow::Result<()> {
    Ok(())
}
