//! A JSON settings file as install and uninstall handle it: read (a missing or empty file is
//! `{}`), rendered as Claude Code writes it, and written atomically, keeping the file's mode,
//! after saving the original as `<file>.peers-backup` once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

pub const BACKUP_SUFFIX: &str = ".peers-backup";

/// A JSON file as read: its bytes (if it existed) and value (`{}` when missing or empty).
pub struct JsonFile {
    pub path: PathBuf,
    pub original: Option<Vec<u8>>,
    pub value: Value,
}

impl JsonFile {
    pub fn read(path: &Path) -> Result<JsonFile> {
        let original = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let value = match &original {
            Some(b) if !b.iter().all(u8::is_ascii_whitespace) => serde_json::from_slice(b)
                .map_err(|e| {
                    anyhow!(
                        "{} is not valid JSON ({e}); fix it or move it away, then run this again",
                        path.display()
                    )
                })?,
            _ => json!({}),
        };
        if !value.is_object() {
            bail!(
                "{} does not hold a JSON object; fix it or move it away, then run this again",
                path.display()
            );
        }
        Ok(JsonFile {
            path: path.to_path_buf(),
            original,
            value,
        })
    }

    pub fn backup_path(&self) -> PathBuf {
        backup_path(&self.path)
    }
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Claude Code's own format: 2-space pretty JSON and a trailing newline.
pub fn render(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("a JSON value serializes");
    b.push(b'\n');
    b
}

/// Writes `bytes` over `file` (following a symlink to its target), atomically, keeping the
/// file's mode (new files: `new_mode`). Saves the original as the backup first, once.
pub fn write_json_file(file: &JsonFile, bytes: &[u8], new_mode: u32) -> Result<()> {
    write_bytes(&file.path, file.original.as_deref(), bytes, new_mode)
}

/// Writes `bytes` over the file at `file_path` (following a symlink to its target),
/// atomically, keeping its mode (new files: `new_mode`). `original`: the bytes it held, saved
/// as the backup first, once.
pub fn write_bytes(
    file_path: &Path,
    original: Option<&[u8]>,
    bytes: &[u8],
    new_mode: u32,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(file_path).unwrap_or_else(|_| file_path.to_path_buf());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    if let Some(orig) = original {
        let backup = backup_path(file_path);
        if !backup.exists() {
            peers_core::paths::write_file_atomic(&backup, orig, mode)
                .with_context(|| format!("cannot write the backup {}", backup.display()))?;
        }
    }
    peers_core::paths::write_file_atomic(&path, bytes, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `v` as a JSON object to edit, or the error `not` (what to say when it is something else).
pub fn object_mut<'a>(v: &'a mut Value, not: &str) -> Result<&'a mut Map<String, Value>> {
    v.as_object_mut().ok_or_else(|| anyhow!("{not}"))
}

/// The object under `key`, added empty when missing, or the error `not`.
pub fn object_at<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    not: &str,
) -> Result<&'a mut Map<String, Value>> {
    object_mut(
        obj.entry(key).or_insert_with(|| Value::Object(Map::new())),
        not,
    )
}

/// The list under `key`, added empty when missing, or the error `not`.
pub fn list_at<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    not: &str,
) -> Result<&'a mut Vec<Value>> {
    obj.entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| anyhow!("{not}"))
}
