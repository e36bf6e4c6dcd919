//! `PluginCgroup` without root (a fake layout in a scratch directory, a recording `bpf(2)`), and
//! as root on this host's real cgroups: v1 device rules, the eBPF program attached to a cgroup2
//! directory (forced on a hybrid host), kill and removal. Root tests skip themselves elsewhere and
//! remove every cgroup they create, also when they fail.

use super::bpf::tests::FakeBpf;
use super::bpf::{Insn, program};
use super::devices::tests::dockerd_rules_with_fuse;
use super::devices::{DeviceState, runc_allowed};
use super::layout::Hierarchy;
use super::*;

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("plugd-cgroup-{tag}-"))
            .tempdir()
            .unwrap();
        Scratch(dir.path().to_path_buf(), dir)
    }
}

fn fake_layout(mode: Mode, dirs: &[(&[&str], &Path)]) -> Layout {
    Layout {
        mode,
        hierarchies: dirs
            .iter()
            .map(|(controllers, dir)| Hierarchy {
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
                own_dir: dir.to_path_buf(),
            })
            .collect(),
    }
}

fn expected_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut all = Rule::parse_all(rules).unwrap();
    all.extend(runc_allowed());
    program(&DeviceState::from_rules(&all))
}

#[test]
fn v2_create_attaches_the_program_for_the_rules_plus_runc_defaults() {
    let scratch = Scratch::new("v2");
    let layout = fake_layout(Mode::Unified, &[(&[], &scratch.0)]);
    let rules = dockerd_rules_with_fuse();
    let bpf = FakeBpf::default();
    let cg = PluginCgroup::create_in(&layout, "abc", &rules, &bpf).unwrap();
    let dir = scratch.0.join("plugd-abc");
    assert!(dir.is_dir());
    assert_eq!(cg.join_paths(), std::slice::from_ref(&dir));
    assert_eq!(*bpf.loads.borrow(), [expected_program(&rules)]);
    assert_eq!(*bpf.attaches.borrow(), std::slice::from_ref(&dir));

    assert_eq!(
        PluginCgroup::open_existing_in(&layout, "abc"),
        Some(cg.clone())
    );
    assert!(cg.pids().unwrap().is_empty());
    cg.kill_all().unwrap();
    cg.remove().unwrap();
    assert!(!dir.exists());
    assert_eq!(PluginCgroup::open_existing_in(&layout, "abc"), None);
    cg.remove().unwrap();
}

#[test]
fn a_failed_attach_leaves_no_directory_behind() {
    let scratch = Scratch::new("attach");
    let layout = fake_layout(Mode::Unified, &[(&[], &scratch.0)]);
    let bpf = FakeBpf {
        fail_attach: true,
        ..FakeBpf::default()
    };
    let err = PluginCgroup::create_in(&layout, "abc", &[], &bpf).unwrap_err();
    assert!(matches!(err, CgroupError::BpfAttach { .. }), "{err}");
    assert!(!scratch.0.join("plugd-abc").exists());
}

#[test]
fn a_stale_empty_cgroup_is_replaced_and_a_busy_one_refused() {
    let scratch = Scratch::new("stale");
    let layout = fake_layout(Mode::Unified, &[(&[], &scratch.0)]);
    let stale = scratch.0.join("plugd-old/leftover-child");
    fs::create_dir_all(&stale).unwrap();
    let cg = PluginCgroup::create_in(&layout, "old", &[], &FakeBpf::default()).unwrap();
    assert!(!stale.exists());
    cg.remove().unwrap();

    let busy = scratch.0.join("plugd-busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(
        busy.join("cgroup.procs"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let err = PluginCgroup::create_in(&layout, "busy", &[], &FakeBpf::default()).unwrap_err();
    match err {
        CgroupError::InUse { path, pids } => {
            assert_eq!(path, busy);
            assert_eq!(pids, [std::process::id() as i32]);
        }
        e => panic!("{e}"),
    }
    let found = PluginCgroup::open_existing_in(&layout, "busy").unwrap();
    assert_eq!(found.pids().unwrap(), [std::process::id() as i32]);
}

#[test]
fn recorded_dirs_are_accepted_only_where_create_would_put_them() {
    let scratch = Scratch::new("recorded");
    let (a, b, c) = (
        scratch.0.join("a"),
        scratch.0.join("b"),
        scratch.0.join("c"),
    );
    let layout = fake_layout(
        Mode::Hybrid,
        &[(&["pids"], &a), (&["memory"], &c), (&[], &b)],
    );
    let own = [a.join("plugd-abc"), b.join("plugd-abc")];
    let decoy = a.join("decoy");
    let other = a.join("plugd-other");
    for d in own.iter().chain([&decoy, &other]) {
        fs::create_dir_all(d).unwrap();
    }
    fs::create_dir_all(&c).unwrap();
    // Where create would put it, but a symlink (to the decoy): not followed.
    std::os::unix::fs::symlink(&decoy, c.join("plugd-abc")).unwrap();
    // What a tampered state.json could name: a decoy, a hierarchy's own dir, its parent, the
    // host's cgroup root, another plugin's cgroup, a path that climbs out of the plugin's.
    let forged = vec![
        decoy.clone(),
        a.clone(),
        scratch.0.clone(),
        PathBuf::from("/sys/fs/cgroup"),
        other,
        a.join("plugd-abc/../decoy"),
        c.join("plugd-abc"),
        own[0].clone(),
    ];
    let found = PluginCgroup::from_recorded_in(&layout, "abc", forged).unwrap();
    assert_eq!(found.join_paths(), &own[..1]);
    // Nothing acceptable: nothing at all.
    assert_eq!(
        PluginCgroup::from_recorded_in(&layout, "abc", vec![decoy.clone()]),
        None
    );
    assert_eq!(
        PluginCgroup::from_recorded_in(&layout, "../x", vec![decoy]),
        None
    );
    // Both of its own, deduplicated; and what open_existing finds is the same.
    let both = vec![own[1].clone(), own[0].clone(), own[1].clone()];
    let found = PluginCgroup::from_recorded_in(&layout, "abc", both).unwrap();
    assert_eq!(found.join_paths(), &own[..]);
    assert_eq!(PluginCgroup::open_existing_in(&layout, "abc"), Some(found));
}

#[test]
fn this_process_is_in_no_plugin_cgroup() {
    let me = std::process::id() as i32;
    assert!(!process_is_in("abc", me));
    assert!(!process_is_in("../x", me));
    assert!(!process_is_in("abc", i32::MAX));
}

#[test]
fn ids_must_be_plain_names_and_v1_needs_a_devices_hierarchy() {
    let scratch = Scratch::new("ids");
    let layout = fake_layout(Mode::Unified, &[(&[], &scratch.0)]);
    for id in ["", "a/b", "..", ".hidden", "a b"] {
        let err = PluginCgroup::create_in(&layout, id, &[], &FakeBpf::default()).unwrap_err();
        assert!(matches!(err, CgroupError::InvalidId(_)), "{id:?}: {err}");
    }
    let v1 = fake_layout(Mode::Hybrid, &[(&["pids"], &scratch.0), (&[], &scratch.0)]);
    let err = PluginCgroup::create_in(&v1, "abc", &[], &FakeBpf::default()).unwrap_err();
    assert!(matches!(err, CgroupError::NoDeviceController), "{err}");
    assert!(fs::read_dir(&scratch.0).unwrap().next().is_none());
}

/// The pid-reuse window: a pid listed in `cgroup.procs` whose process is not (or no longer) in
/// the plugin's cgroup — here an unrelated child of this test — is neither signalled nor counted
/// as a survivor. (Before pidfds and the membership check, `kill_all` SIGKILLed it.)
#[test]
fn a_listed_pid_outside_the_cgroup_is_not_signalled() {
    let scratch = Scratch::new("reuse");
    let layout = fake_layout(Mode::Unified, &[(&[], &scratch.0)]);
    let cg = PluginCgroup::create_in(&layout, "reuse", &[], &FakeBpf::default()).unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let dir = scratch.0.join("plugd-reuse");
    fs::write(dir.join("cgroup.procs"), format!("{}\n", bystander.id())).unwrap();
    let killed = cg.kill_all();
    let status = bystander.try_wait().unwrap();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(killed.is_ok(), "{killed:?}");
    assert_eq!(status, None, "the unrelated process was signalled");
}

#[test]
fn cgroup_membership_by_path_component() {
    let text = "12:pids:/process_api/plugd-abc\n0::/plugd-abc/sub\n";
    assert!(cgroup_lines_name(text, "plugd-abc"));
    assert!(cgroup_lines_name("0::/plugd-abc/sub\n", "plugd-abc"));
    assert!(!cgroup_lines_name("0::/plugd-abcd\n", "plugd-abc"));
    assert!(!cgroup_lines_name("0::/x/plugd-abc.scope\n", "plugd-abc"));
    assert!(!cgroup_lines_name("garbage", "plugd-abc"));
}

#[test]
fn zombies_and_gone_pids_are_dead() {
    assert!(!is_dead(std::process::id() as i32));
    assert!(is_dead(i32::MAX));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Until it is reaped the exited child is a zombie.
    for _ in 0..200 {
        if is_dead(pid) {
            break;
        }
        sleep(Duration::from_millis(5));
    }
    assert!(is_dead(pid));
    child.wait().unwrap();
}

/// Root tests on this host's real cgroups.
mod root {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// Kills and removes the cgroup even when the test panics.
    struct Guard(PluginCgroup);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill_all();
            if let Err(e) = self.0.remove() {
                eprintln!("cleanup of {:?} failed: {e}", self.0.join_paths());
            }
        }
    }

    fn host_layout() -> Option<Layout> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: not root");
            return None;
        }
        match Layout::detect() {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    fn test_id(tag: &str) -> String {
        format!("test-{}-{tag}", std::process::id())
    }

    /// Creates the cgroup, or `None` (skip) when this host refuses cgroup creation or eBPF device
    /// programs altogether (read-only cgroupfs in a container, no CAP_SYS_ADMIN for bpf).
    fn create(layout: &Layout, tag: &str, rules: &[DeviceRule]) -> Option<Guard> {
        let refused = |e: &io::Error| {
            matches!(
                e.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM)
            )
        };
        match PluginCgroup::create_in(layout, &test_id(tag), rules, &SysBpf) {
            Ok(cg) => Some(Guard(cg)),
            Err(CgroupError::Create { source, path }) if refused(&source) => {
                eprintln!("skipped: cannot create {}: {source}", path.display());
                None
            }
            Err(CgroupError::BpfLoad(e)) if refused(&e) => {
                eprintln!("skipped: BPF_PROG_LOAD refused: {e}");
                None
            }
            Err(e) => panic!("create: {e}"),
        }
    }

    /// A shell that joins the cgroups, reports which probe devices it can open, says `ready` and
    /// then sleeps with a forked child, so there are two processes to kill.
    fn spawn_member(cg: &PluginCgroup, probes: &[&str]) -> (Child, Vec<String>) {
        let mut script = String::new();
        for d in cg.join_paths() {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' || exit 90\n",
                d.display()
            ));
        }
        for p in probes {
            script.push_str(&format!(
                "if true 2>/dev/null < {p}; then echo '{p} ok'; else echo '{p} denied'; fi\n"
            ));
        }
        script.push_str("sleep 60 & echo ready\nexec sleep 60\n");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("member exited early: {:?}, after {lines:?}", child.wait());
            }
            let line = line.trim().to_owned();
            if line == "ready" {
                break;
            }
            lines.push(line);
        }
        (child, lines)
    }

    /// Devices on this host to probe: allowed ones, and ones dockerd's rules deny.
    fn probes() -> (Vec<&'static str>, Vec<&'static str>) {
        let exists = |p: &&str| Path::new(p).exists();
        let allowed = ["/dev/null", "/dev/zero", "/dev/full"]
            .into_iter()
            .filter(exists)
            .collect();
        let denied = ["/dev/kmsg", "/dev/fuse", "/dev/loop-control"]
            .into_iter()
            .filter(exists)
            .collect();
        (allowed, denied)
    }

    fn check_enforcement(g: &Guard, allowed_fuse: bool) {
        let (allowed, denied) = probes();
        let all: Vec<&str> = allowed.iter().chain(&denied).copied().collect();
        // Outside the cgroup every probe opens (we are root).
        for p in &all {
            assert!(
                fs::File::open(p).is_ok(),
                "{p} must open outside the cgroup"
            );
        }
        let (mut child, lines) = spawn_member(&g.0, &all);
        let mut want: Vec<String> = allowed.iter().map(|p| format!("{p} ok")).collect();
        for p in &denied {
            let ok = allowed_fuse && *p == "/dev/fuse";
            want.push(format!("{p} {}", if ok { "ok" } else { "denied" }));
        }
        assert_eq!(lines, want);

        let pids = g.0.pids().unwrap();
        assert_eq!(pids.len(), 2, "the shell's sleep and its child: {pids:?}");
        assert!(pids.contains(&(child.id() as i32)));
        g.0.kill_all().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(live_pids(&g.0.pids().unwrap()).is_empty());
    }

    #[test]
    fn v1_device_rules_are_enforced_and_listed_as_emulated() {
        let Some(layout) = host_layout() else { return };
        if layout.mode == Mode::Unified {
            return eprintln!("skipped: no v1 devices controller on a unified host");
        }
        let rules = &dockerd_rules_with_fuse()[..8];
        let Some(g) = create(&layout, "v1", rules) else {
            return;
        };
        assert_eq!(g.0.join_paths().len(), layout.hierarchies.len());
        let devices_dir =
            g.0.join_paths()
                .iter()
                .find(|d| d.join("devices.list").exists())
                .unwrap()
                .clone();
        let mut all = Rule::parse_all(rules).unwrap();
        all.extend(runc_allowed());
        let listed = fs::read_to_string(devices_dir.join("devices.list")).unwrap();
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            DeviceState::from_rules(&all).v1_list()
        );
        check_enforcement(&g, false);
        let dirs = g.0.join_paths().to_vec();
        drop(g);
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }

    /// Without a `cgroup.kill` (legacy v1), `kill_all` freezes, kills and thaws.
    #[test]
    fn legacy_kill_goes_through_the_freezer() {
        let Some(layout) = host_layout() else { return };
        let v1 = Layout {
            mode: Mode::Legacy,
            hierarchies: layout
                .hierarchies
                .into_iter()
                .filter(|h| !h.is_v2())
                .collect(),
        };
        if !v1
            .hierarchies
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == "freezer"))
        {
            return eprintln!("skipped: no v1 freezer hierarchy");
        }
        let Some(g) = create(&v1, "freezer", &[]) else {
            return;
        };
        let (mut child, _) = spawn_member(&g.0, &[]);
        assert_eq!(g.0.pids().unwrap().len(), 2);
        g.0.kill_all().unwrap();
        assert!(!child.wait().unwrap().success());
        let state =
            g.0.join_paths()
                .iter()
                .map(|d| d.join("freezer.state"))
                .find(|f| f.exists())
                .unwrap();
        assert_eq!(fs::read_to_string(state).unwrap().trim(), "THAWED");
    }

    #[test]
    fn v2_ebpf_device_program_is_enforced() {
        let Some(layout) = host_layout() else { return };
        let Ok(v2) = layout.force_v2() else {
            return eprintln!("skipped: no cgroup2 hierarchy");
        };
        let rules = &dockerd_rules_with_fuse();
        for (tag, rules, fuse) in [("v2", &rules[..8], false), ("v2fuse", &rules[..], true)] {
            let Some(g) = create(&v2, tag, rules) else {
                return;
            };
            assert_eq!(g.0.join_paths().len(), 1);
            check_enforcement(&g, fuse);
            let dir = g.0.join_paths()[0].clone();
            drop(g);
            assert!(!dir.exists());
        }
    }

    #[test]
    fn open_existing_finds_what_create_made() {
        let Some(layout) = host_layout() else { return };
        let Some(g) = create(&layout, "reopen", &dockerd_rules_with_fuse()) else {
            return;
        };
        let found = PluginCgroup::open_existing_in(&layout, g.0.id()).unwrap();
        assert_eq!(found, g.0);
        let recorded = PluginCgroup::from_recorded(g.0.id(), g.0.join_paths().to_vec())
            .unwrap()
            .unwrap();
        assert_eq!(recorded, g.0);
        // A member is in the plugin's cgroup; this test is not.
        let (mut child, _) = spawn_member(&g.0, &[]);
        assert!(process_is_in(g.0.id(), child.id() as i32));
        assert!(!process_is_in(g.0.id(), std::process::id() as i32));
        g.0.kill_all().unwrap();
        let _ = child.wait();
        // Creating it again while it exists (empty) replaces it.
        let again = PluginCgroup::create_in(&layout, g.0.id(), &[], &SysBpf).unwrap();
        assert_eq!(again, g.0);
    }
}
