//! What uninstall writes for a file once our entries are out: the original bytes from the
//! backup when nothing else changed, else the file without our entries (or no file at all).

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::settings::{JsonFile, render, write_json_file};

/// What uninstall writes for a file after removing our entries: the backup's exact bytes
/// when the value matches it (and then the backup is no longer needed), else the pruned value.
pub enum Restore {
    /// Write these bytes back (from the backup), and remove the backup.
    Backup(Vec<u8>),
    /// Remove the file: install created it and nothing else is in it.
    Remove,
    /// Write this value.
    Value(Value),
}

pub fn restore_plan(file: &JsonFile, kept: &Value, pruned: &Value) -> Restore {
    if let Ok(b) = std::fs::read(file.backup_path()) {
        let bv: Value = if b.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(&b) {
                Ok(v) => v,
                Err(_) => return Restore::Value(pruned.clone()),
            }
        };
        if &bv == kept || &bv == pruned {
            return Restore::Backup(b);
        }
        return Restore::Value(pruned.clone());
    }
    if pruned.as_object().is_some_and(Map::is_empty) {
        return Restore::Remove;
    }
    Restore::Value(pruned.clone())
}

pub fn apply_restore(file: &JsonFile, plan: Restore) -> Result<&'static str> {
    match plan {
        Restore::Backup(bytes) => {
            write_json_file(file, &bytes, 0o644)?;
            let _ = std::fs::remove_file(file.backup_path());
            Ok("restored the original")
        }
        Restore::Remove => {
            std::fs::remove_file(&file.path)
                .with_context(|| format!("cannot remove {}", file.path.display()))?;
            Ok("removed the file (install had created it)")
        }
        Restore::Value(v) => {
            write_json_file(file, &render(&v), 0o644)?;
            Ok("updated")
        }
    }
}
