//! The repository's Claude Code plugin, laid out the way `claude --plugin-dir` loads it.

use std::path::Path;

/// The plugin's files, as the repository has them.
const FILES: [&str; 3] = [
    ".claude-plugin/plugin.json",
    "hooks/hooks.json",
    ".mcp.json",
];

/// Copies the repository's plugin files into `dir` and links the workspace's built binaries
/// into its `bin/` (not on PATH, and nothing installed into HOME).
pub fn lay_out(dir: &Path) {
    let root = crate::claude::driver::workspace_root();
    for rel in FILES {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), &to).unwrap();
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for b in [
        "peers-mcp",
        "peers-deliver",
        "peers-deliver-net",
        "peers-broker",
    ] {
        std::os::unix::fs::symlink(crate::bin(b), dir.join("bin").join(b)).unwrap();
    }
}
