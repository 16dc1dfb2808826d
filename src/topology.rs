//! CPU topology: which CPUs this process may run on, how they group into
//! physical cores (SMT siblings) and NUMA nodes.
//!
//! On Linux it reads sysfs (`/sys/devices/system/cpu/cpu*/topology`,
//! `/sys/devices/system/node/node*/cpulist`), restricted to the process's
//! affinity mask; elsewhere it falls back to `available_parallelism` with
//! one CPU per core and one node.
//!
//! ```
//! let topo = sheaf::topology::Topology::detect();
//! assert!(topo.cpus().len() >= 1);
//! assert!(topo.physical_cores().len() <= topo.cpus().len());
//! println!("{topo}");
//! ```

use std::collections::BTreeMap;
use std::fmt;

/// One logical CPU the process may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// The OS's CPU number.
    pub id: usize,
    /// Index of its physical core in [`Topology::physical_cores`].
    pub core: usize,
    /// Its package (socket).
    pub package: usize,
    /// Its NUMA node.
    pub node: usize,
}

/// Where a [`Topology`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from Linux sysfs.
    Sysfs,
    /// Guessed from `available_parallelism`: each CPU its own core, one node.
    Fallback,
}

/// The CPUs this process may use, grouped into physical cores and NUMA nodes.
#[derive(Debug, Clone)]
pub struct Topology {
    cpus: Vec<Cpu>,
    cores: Vec<Vec<usize>>,
    nodes: BTreeMap<usize, Vec<usize>>,
    source: Source,
}

impl Topology {
    /// Reads the topology from the OS (see the module docs).
    pub fn detect() -> Self {
        if cfg!(target_os = "linux") && !cfg!(miri) {
            if let Some(topology) = Self::from_sysfs(std::path::Path::new("/sys/devices/system")) {
                return topology;
            }
        }
        Self::fallback()
    }

    /// One CPU, one core, one node: a placeholder where the real topology is not needed.
    pub(crate) fn single() -> Self {
        Self {
            cpus: vec![Cpu {
                id: 0,
                core: 0,
                package: 0,
                node: 0,
            }],
            cores: vec![vec![0]],
            nodes: BTreeMap::from([(0, vec![0])]),
            source: Source::Fallback,
        }
    }

    fn fallback() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus: Vec<Cpu> = (0..n)
            .map(|id| Cpu {
                id,
                core: id,
                package: 0,
                node: 0,
            })
            .collect();
        Self {
            cores: (0..n).map(|id| vec![id]).collect(),
            nodes: BTreeMap::from([(0, (0..n).collect())]),
            cpus,
            source: Source::Fallback,
        }
    }

    /// Builds the topology from a sysfs tree rooted at `root`
    /// (`/sys/devices/system`), restricted to the affinity mask.
    fn from_sysfs(root: &std::path::Path) -> Option<Self> {
        let allowed: Vec<usize> = core_affinity::get_core_ids()?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if allowed.is_empty() {
            return None;
        }
        let read = |path: std::path::PathBuf| -> Option<usize> {
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        };
        let mut node_of = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(root.join("node")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(node) = name
                    .strip_prefix("node")
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                if let Ok(list) = std::fs::read_to_string(entry.path().join("cpulist")) {
                    for cpu in parse_cpu_list(&list) {
                        node_of.insert(cpu, node);
                    }
                }
            }
        }
        let mut core_index: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut cores: Vec<Vec<usize>> = Vec::new();
        let mut cpus = Vec::with_capacity(allowed.len());
        for id in allowed {
            let topo = root.join(format!("cpu/cpu{id}/topology"));
            let package = read(topo.join("physical_package_id")).unwrap_or(0);
            let core_id = read(topo.join("core_id")).unwrap_or(id);
            let core = *core_index.entry((package, core_id)).or_insert_with(|| {
                cores.push(Vec::new());
                cores.len() - 1
            });
            cores[core].push(id);
            cpus.push(Cpu {
                id,
                core,
                package,
                node: node_of.get(&id).copied().unwrap_or(0),
            });
        }
        let mut nodes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for cpu in &cpus {
            nodes.entry(cpu.node).or_default().push(cpu.id);
        }
        Some(Self {
            cpus,
            cores,
            nodes,
            source: Source::Sysfs,
        })
    }

    /// The CPUs this process may run on.
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// Physical cores, each listed as its allowed SMT sibling CPU ids.
    pub fn physical_cores(&self) -> &[Vec<usize>] {
        &self.cores
    }

    /// NUMA nodes and the allowed CPU ids on each.
    pub fn numa_nodes(&self) -> impl Iterator<Item = (usize, &[usize])> {
        self.nodes
            .iter()
            .map(|(node, cpus)| (*node, cpus.as_slice()))
    }

    /// Where the facts came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// One CPU per physical core, in order: where per-core threads go.
    pub fn one_cpu_per_core(&self) -> Vec<usize> {
        self.cores
            .iter()
            .filter_map(|siblings| siblings.first().copied())
            .collect()
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let smt = self.cores.iter().map(Vec::len).max().unwrap_or(1);
        write!(
            f,
            "{} CPUs on {} physical cores ({} thread{} per core), {} NUMA node{}",
            self.cpus.len(),
            self.cores.len(),
            smt,
            if smt == 1 { "" } else { "s" },
            self.nodes.len(),
            if self.nodes.len() == 1 { "" } else { "s" },
        )?;
        for (node, cpus) in &self.nodes {
            write!(f, "; node {node}: cpus {}", format_cpu_list(cpus))?;
        }
        if self.source == Source::Fallback {
            f.write_str(" (guessed: no sysfs)")?;
        }
        Ok(())
    }
}

/// Parses a Linux CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.trim().parse::<usize>().ok()),
        }
    }
    cpus
}

fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// Pins the calling thread to `cpu`; returns `false` where pinning is
/// unsupported or refused (harmless: the thread just stays unpinned).
pub fn pin_current_thread(cpu: usize) -> bool {
    if cfg!(miri) {
        return false;
    }
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// The CPU the calling thread runs on now, where the OS says (Linux).
#[inline]
pub(crate) fn current_cpu() -> Option<usize> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        // SAFETY: sched_getcpu takes no arguments and only reads the calling
        // thread's state (glibc serves it from the rseq area or the vDSO).
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            return Some(cpu as usize);
        }
    }
    None
}

/// [`current_cpu`], asked of the OS once every 64 calls per thread: a thread
/// that migrates keeps using its old CPU's slot for at most 63 more calls,
/// which costs a little sharing, never correctness.
#[inline]
pub(crate) fn current_cpu_cached() -> Option<usize> {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    }
    CACHE.with(|cache| {
        let (cpu, left) = cache.get();
        if left > 0 {
            cache.set((cpu, left - 1));
            return Some(cpu as usize);
        }
        let cpu = current_cpu()?;
        cache.set((cpu as u32, 63));
        Some(cpu)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
    }

    #[test]
    fn sysfs_tree_with_smt_and_two_nodes() {
        let dir = std::env::temp_dir().join(format!("sheaf-topo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let allowed: Vec<usize> = match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() && !cfg!(miri) => ids.into_iter().map(|c| c.id).collect(),
            _ => return,
        };
        // Fake tree: CPUs pair up as SMT siblings; even cores on node 0, odd on node 1.
        for &id in &allowed {
            let t = dir.join(format!("cpu/cpu{id}/topology"));
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(t.join("physical_package_id"), "0\n").unwrap();
            std::fs::write(t.join("core_id"), format!("{}\n", id / 2)).unwrap();
        }
        for node in 0..2 {
            let n = dir.join(format!("node/node{node}"));
            std::fs::create_dir_all(&n).unwrap();
            let list: Vec<String> = allowed
                .iter()
                .filter(|&&id| (id / 2) % 2 == node)
                .map(|id| id.to_string())
                .collect();
            std::fs::write(n.join("cpulist"), list.join(",")).unwrap();
        }
        let topo = Topology::from_sysfs(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(topo.cpus().len(), allowed.len());
        let expected_cores: std::collections::BTreeSet<usize> =
            allowed.iter().map(|id| id / 2).collect();
        assert_eq!(topo.physical_cores().len(), expected_cores.len());
        for cpu in topo.cpus() {
            assert_eq!(cpu.node, (cpu.id / 2) % 2);
            assert!(topo.physical_cores()[cpu.core].contains(&cpu.id));
        }
        assert_eq!(topo.one_cpu_per_core().len(), expected_cores.len());
        assert_eq!(topo.source(), Source::Sysfs);
    }

    #[test]
    fn detect_and_display() {
        let topo = Topology::detect();
        assert!(!topo.cpus().is_empty());
        let text = topo.to_string();
        assert!(text.contains("CPUs on"), "{text}");
        let fallback = Topology::fallback();
        assert!(fallback.to_string().contains("guessed"));
    }
}
