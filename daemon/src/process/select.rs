//! Which processes the daemon watches: selectors as given on the command
//! line (`pid=N`, `comm=NAME`, `exe=GLOB`, `cgroup=GLOB`, or several joined
//! by `,`, all of which must hold), matched against what `/proc` says of
//! each process.

use std::{fmt, fs, str::FromStr};

use thiserror::Error;

use super::proc::read_comm;
use crate::model::glob_match;

/// The longest command name the kernel keeps (`TASK_COMM_LEN` less its NUL).
const COMM_LEN: usize = 15;

/// One `--target` selector: conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Its conditions (at least one).
    pub all: Vec<Condition>,
}

/// One condition of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `pid=N`: that process.
    Pid(u32),
    /// `comm=NAME`: processes whose command name (`/proc/PID/comm`) is
    /// `NAME` (cut to the kernel's 15 bytes, as the kernel cuts it).
    Comm(String),
    /// `exe=GLOB`: processes whose executable (the path behind
    /// `/proc/PID/exe`) matches.
    Exe(String),
    /// `cgroup=GLOB`: processes with a line of `/proc/PID/cgroup` matching
    /// (systemd units, Kubernetes pods and containers).
    Cgroup(String),
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{text:?} is not a selector: {why} (give pid=N, comm=NAME, exe=GLOB or cgroup=GLOB, or several joined by `,`)")]
pub struct BadSelector {
    text: String,
    why: &'static str,
}

impl FromStr for Selector {
    type Err = BadSelector;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let all = text
            .split(',')
            .map(|part| Condition::parse(part, text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { all })
    }
}

impl Condition {
    /// Parses one condition, `part` of the selector `text`.
    fn parse(part: &str, text: &str) -> Result<Self, BadSelector> {
        let bad = |why| BadSelector {
            text: text.to_string(),
            why,
        };
        let text = part;
        let (kind, value) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        if value.is_empty() {
            return Err(bad("nothing after `=`"));
        }
        match kind.trim() {
            "pid" => match value.parse::<u32>() {
                Ok(pid) if pid > 0 => Ok(Self::Pid(pid)),
                _ => Err(bad("not a process id")),
            },
            "comm" => {
                let mut end = value.len().min(COMM_LEN);
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                Ok(Self::Comm(value[..end].to_string()))
            }
            "exe" => Ok(Self::Exe(value.to_string())),
            "cgroup" => Ok(Self::Cgroup(value.to_string())),
            _ => Err(bad("unknown kind of selector")),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, condition) in self.all.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{condition}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pid(pid) => write!(f, "pid={pid}"),
            Self::Comm(name) => write!(f, "comm={name}"),
            Self::Exe(glob) => write!(f, "exe={glob}"),
            Self::Cgroup(glob) => write!(f, "cgroup={glob}"),
        }
    }
}

/// What a selector is matched against: one process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its PID.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its executable's path.
    pub exe: String,
    /// The lines of its `/proc/PID/cgroup` (read only when a selector
    /// needs them).
    pub cgroups: Vec<String>,
}

impl Selector {
    /// Whether `candidate` is selected: every condition holds.
    pub fn matches(&self, candidate: &Candidate) -> bool {
        self.all.iter().all(|c| c.matches(candidate))
    }

    /// Whether matching needs the processes' cgroups.
    fn needs_cgroups(&self) -> bool {
        self.all.iter().any(|c| matches!(c, Condition::Cgroup(_)))
    }
}

impl Condition {
    /// Whether `candidate` meets it.
    pub fn matches(&self, candidate: &Candidate) -> bool {
        match self {
            Self::Pid(pid) => candidate.pid == *pid,
            Self::Comm(name) => candidate.comm == *name,
            Self::Exe(glob) => glob_match(glob, &candidate.exe),
            Self::Cgroup(glob) => candidate.cgroups.iter().any(|line| glob_match(glob, line)),
        }
    }
}

/// Every process in `/proc` (thread-group leaders, with an executable:
/// no kernel threads) that any of `selectors` selects, but `exclude`
/// (mapwatch itself), by PID. Processes that vanish while being read are
/// skipped.
pub fn scan(selectors: &[Selector], exclude: u32) -> Vec<Candidate> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Candidate> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != exclude)
        .filter_map(|pid| check(selectors, pid))
        .collect();
    found.sort_by_key(|c| c.pid);
    found
}

/// The process `pid`, if any of `selectors` selects it (and it is still
/// there, with an executable).
pub fn check(selectors: &[Selector], pid: u32) -> Option<Candidate> {
    let cgroups = selectors.iter().any(Selector::needs_cgroups);
    candidate(pid, cgroups).filter(|candidate| selectors.iter().any(|s| s.matches(candidate)))
}

/// One process as the selectors see it, if it is still there and has an
/// executable.
fn candidate(pid: u32, cgroups: bool) -> Option<Candidate> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let comm = read_comm(pid).ok()?;
    let cgroups = if cgroups {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()?
            .lines()
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    Some(Candidate {
        pid,
        comm,
        exe: exe.to_string_lossy().into_owned(),
        cgroups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Candidate {
        Candidate {
            pid: 4242,
            comm: "etcd".into(),
            exe: "/usr/bin/etcd".into(),
            cgroups: vec!["0::/system.slice/etcd.service".into()],
        }
    }

    #[test]
    fn selectors_parse_and_print_back() {
        for text in [
            "pid=4242",
            "comm=etcd",
            "exe=/usr/bin/*",
            "cgroup=*etcd.service",
        ] {
            let selector: Selector = text.parse().expect(text);
            assert_eq!(selector.to_string(), text);
        }
        // The kernel keeps 15 bytes of a command name.
        assert_eq!(
            "comm=a-very-long-server-name".parse::<Selector>(),
            Ok(Selector {
                all: vec![Condition::Comm("a-very-long-ser".into())]
            })
        );
        let both: Selector = "comm=etcd,cgroup=*kubepods*".parse().expect("two");
        assert_eq!(both.all.len(), 2);
        assert_eq!(both.to_string(), "comm=etcd,cgroup=*kubepods*");
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (text, why) in [
            ("etcd", "no `=`"),
            ("pid=", "nothing after"),
            ("pid=x", "not a process id"),
            ("pid=0", "not a process id"),
            ("name=etcd", "unknown kind"),
            ("comm=etcd,", "no `=`"),
        ] {
            let error = text.parse::<Selector>().expect_err(text).to_string();
            assert!(error.contains(why) && error.contains(text), "{error}");
            assert!(error.contains("pid=N, comm=NAME"), "{error}");
        }
    }

    #[test]
    fn each_kind_matches_its_field() {
        let etcd = server();
        let yes = [
            "pid=4242",
            "comm=etcd",
            "exe=/usr/bin/*",
            "cgroup=*etcd.service",
            "comm=etcd,cgroup=*system.slice*",
        ];
        let no = [
            "pid=1",
            "comm=etc",
            "exe=/usr/sbin/*",
            "cgroup=*kubepods*",
            "comm=etcd,cgroup=*kubepods*",
        ];
        for text in yes {
            assert!(text.parse::<Selector>().unwrap().matches(&etcd), "{text}");
        }
        for text in no {
            assert!(!text.parse::<Selector>().unwrap().matches(&etcd), "{text}");
        }
    }

    #[test]
    fn the_scan_finds_this_test_by_pid_and_never_the_excluded_one() {
        let me = std::process::id();
        let this: Selector = format!("pid={me}").parse().expect("a selector");
        let found = scan(std::slice::from_ref(&this), 0);
        assert_eq!(found.iter().map(|c| c.pid).collect::<Vec<_>>(), [me]);
        assert!(!found[0].comm.is_empty() && found[0].exe.starts_with('/'));
        assert!(scan(std::slice::from_ref(&this), me).is_empty());
        assert_eq!(check(&[this], me).map(|c| c.pid), Some(me));
    }
}
