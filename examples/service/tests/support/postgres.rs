//! One private PostgreSQL cluster: `initdb` in a temporary directory, `pg_ctl start` on a free
//! loopback port, with `pg_stat_statements` loaded so tests count the queries PostgreSQL ran.
//! `initdb` refuses to run as root: as root the tools run as the unprivileged user
//! `postgres` (created if missing).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    as_user: Option<&'static str>,
}

/// The directory of the PostgreSQL server binaries (`initdb`, `pg_ctl`).
fn bin_dir() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let candidates = from_pg_config
        .into_iter()
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        )
        .chain([PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")]);
    for dir in candidates {
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return dir;
        }
    }
    panic!("initdb and pg_ctl not found: scripts/test.sh installs postgresql with apt-get");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = super::temp_dir("pg");
        let as_user = is_root().then_some("postgres");
        if let Some(user) = as_user {
            // One test at a time creates the user (the others would fail: it exists).
            static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
            if !Command::new("id")
                .arg(user)
                .output()
                .is_ok_and(|o| o.status.success())
            {
                let created = Command::new("useradd")
                    .args(["--system", "--no-create-home", user])
                    .status();
                assert!(created.is_ok_and(|s| s.success()), "useradd {user} failed");
            }
            let owned = Command::new("chown").arg("-R").arg(user).arg(&dir).status();
            assert!(
                owned.is_ok_and(|s| s.success()),
                "chown of the data dir failed"
            );
        }
        let pg = Postgres {
            port: super::free_port(),
            dir,
            as_user,
        };
        let data = pg.dir.join("data");
        pg.run(
            &bin.join("initdb"),
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            pg.port,
            path(&pg.dir)
        );
        let mut file = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        file.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), file).expect("write conf");
        let log = pg.dir.join("log");
        pg.run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        pg
    }

    /// `program args`, as the unprivileged user when there is one.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = match self.as_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.args(args).current_dir(&self.dir);
        command
    }

    fn run(&self, program: &Path, args: &[&str]) {
        let status = self
            .command(program, args)
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            status.status.success(),
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let bin = bin_dir();
        let stop = ["-D", path(&data), "-m", "immediate", "stop"];
        let _ = self.command(&bin.join("pg_ctl"), &stop).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
