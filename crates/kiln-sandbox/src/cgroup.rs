//! The process limit of a sandbox: a pids cgroup made by the helper (host credentials) below
//! the caller's own cgroup, `kiln-<helper pid>`, with `pids.max` set and the namespace
//! holder moved in before it forks PID 1, so every process of the sandbox is counted.
//!
//! cgroup v2 is used where `/sys/fs/cgroup` is the unified hierarchy and the `pids`
//! controller is (or can be) enabled for the caller's subtree; else the v1 `pids`
//! hierarchy. Where neither works (no delegation, a read-only cgroupfs in a container) the
//! command gets `RLIMIT_NPROC` instead, set by PID 1 before `execve`: in the sandbox's fresh
//! user namespace it counts the processes of the command's uid in that sandbox only.
//!
//! The cgroup is removed when the run ends (the kernel has killed the pid namespace by then);
//! one left behind by a killed helper is removed by the next sandbox that finds its owner
//! gone.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Pid;

/// Prefix of the cgroups kiln makes.
const PREFIX: &str = "kiln-";

/// A pids cgroup that is removed on drop.
#[derive(Debug)]
pub(crate) struct PidsCgroup {
    dir: PathBuf,
}

/// Why no pids cgroup could be made (the sandbox then falls back to `RLIMIT_NPROC`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the pids controller is not enabled for {}", .0.display())]
    PidsNotEnabled(PathBuf),
    #[error("no pids cgroup controller is available")]
    NoPidsController,
    #[error("the pids cgroup hierarchy is not mounted")]
    PidsNotMounted,
}

impl PidsCgroup {
    /// Makes the cgroup with `pids.max = limit`, or says why it cannot.
    pub(crate) fn create(limit: u32) -> Result<Self, CgroupError> {
        let own = fs_err::read_to_string("/proc/self/cgroup")?;
        let mountinfo = fs_err::read_to_string("/proc/self/mountinfo")?;
        let parent = parent_dir(&own, &mountinfo)?;
        remove_stale(&parent);
        let dir = parent.join(format!("{PREFIX}{}", std::process::id()));
        match fs_err::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
        let cgroup = Self { dir };
        if !cgroup.dir.join("pids.max").exists() {
            // v2: the controller must be enabled in the parent's subtree first (refused when
            // the parent holds processes and is not the root).
            let _ = fs_err::write(parent.join("cgroup.subtree_control"), "+pids");
            if !cgroup.dir.join("pids.max").exists() {
                return Err(CgroupError::PidsNotEnabled(parent));
            }
        }
        fs_err::write(cgroup.dir.join("pids.max"), limit.to_string())?;
        Ok(cgroup)
    }

    /// Moves `pid` (and so every child it forks later) into the cgroup.
    pub(crate) fn add(&self, pid: Pid) -> io::Result<()> {
        fs_err::write(
            self.dir.join("cgroup.procs"),
            pid.as_raw_nonzero().to_string(),
        )
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The pid namespace's last processes may still be exiting: retry for a while.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match fs_err::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return,
                Err(err) if Instant::now() >= deadline => {
                    tracing::warn!(cgroup = %self.dir.display(), %err, "cannot remove the sandbox's pids cgroup");
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The directory of the caller's own pids cgroup: v2 when `/sys/fs/cgroup`-style unified
/// hierarchy offers `pids`, else the v1 hierarchy that has it.
fn parent_dir(own_cgroups: &str, mountinfo: &str) -> Result<PathBuf, CgroupError> {
    let mounts: Vec<CgroupMount> = mountinfo.lines().filter_map(CgroupMount::parse).collect();
    // v2: "0::/path".
    if let Some(path) = own_cgroups.lines().find_map(|l| l.strip_prefix("0::"))
        && let Some(mount) = mounts.iter().find(|m| m.is_v2)
    {
        let dir = mount.dir_for(path);
        let controllers =
            fs_err::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "pids") {
            return Ok(dir);
        }
    }
    // v1: "N:pids:/path" (controllers may be co-mounted: "N:cpu,pids:/path").
    let path = own_cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            controllers.split(',').any(|c| c == "pids").then_some(path)
        })
        .ok_or(CgroupError::NoPidsController)?;
    let mount = mounts
        .iter()
        .find(|m| !m.is_v2 && m.has_pids)
        .ok_or(CgroupError::PidsNotMounted)?;
    Ok(mount.dir_for(path))
}

#[derive(Debug)]
struct CgroupMount {
    /// The part of the hierarchy mounted (not `/` inside a container).
    root: String,
    point: PathBuf,
    is_v2: bool,
    has_pids: bool,
}

impl CgroupMount {
    /// One line of `/proc/self/mountinfo`, if it is a cgroup mount.
    fn parse(line: &str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next()?;
        let options = right.next().unwrap_or("");
        let is_v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        Some(Self {
            root: (*left.get(3)?).to_owned(),
            point: PathBuf::from(unescape(left.get(4)?)),
            is_v2,
            has_pids: options.split(',').any(|o| o == "pids"),
        })
    }

    fn dir_for(&self, path: &str) -> PathBuf {
        let relative = path
            .strip_prefix(self.root.as_str())
            .unwrap_or(path)
            .trim_start_matches('/');
        self.point.join(relative)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Removes cgroups left by helpers that were killed before their drop ran.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs_err::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs_err::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
41 30 0:37 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,pids
42 30 0:38 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:21 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn v1_pids_hierarchy_in_a_hybrid_setup() {
        let own = "9:name=systemd:/\n8:pids:/ci/job\n4:memory:/x\n0::/\n";
        // The unified mount has no pids controller here (its cgroup.controllers does not
        // exist in the test), so v1 is chosen.
        assert_eq!(
            parent_dir(own, HYBRID_MOUNTINFO).unwrap(),
            PathBuf::from("/sys/fs/cgroup/pids/ci/job")
        );
    }

    #[test]
    fn container_mount_roots_are_stripped() {
        let mount = CgroupMount::parse(
            "41 30 0:37 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
        )
        .unwrap();
        assert_eq!(
            mount.dir_for("/docker/abc/sub"),
            PathBuf::from("/sys/fs/cgroup/pids/sub")
        );
    }

    #[test]
    fn no_pids_controller_is_an_error() {
        let own = "4:memory:/x\n";
        assert!(parent_dir(own, HYBRID_MOUNTINFO).is_err());
    }
}
