//! A throwaway PostgreSQL cluster for the tests: Debian's package
//! (`scripts/setup.sh` installs it), initdb and pg_ctl on a temporary
//! directory and a free port, run as the `postgres` user (PostgreSQL
//! refuses to run as root). Skips, with the reason printed, only where it
//! cannot run: not Linux, or not root (needed to switch users).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn bin_dir() -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    v.sort();
    v.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .expect("run runuser")
}

impl Cluster {
    /// Starts a cluster, or returns None (printing why) where the test
    /// cannot run. In CI (CI=true) it must run.
    pub fn start() -> Option<Cluster> {
        if !cfg!(target_os = "linux") {
            eprintln!("skipped: the PostgreSQL tests need Linux");
            return None;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !root {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must run the PostgreSQL tests as root"
            );
            eprintln!("skipped: the PostgreSQL tests need root (to run the cluster as `postgres`)");
            return None;
        }
        let bin = bin_dir().expect("PostgreSQL is not installed: run scripts/setup.sh");
        let dir = tempfile::Builder::new()
            .prefix("memtap-pg")
            .tempdir()
            .unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        assert!(Command::new("chown")
            .args(["-R", "postgres:postgres", &d])
            .status()
            .unwrap()
            .success());
        let o = as_postgres(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            &format!("{d}/data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let c = Cluster {
            dir,
            port: free_port(),
            bin,
        };
        c.restart();
        Some(c)
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    /// Starts (again) on the same port and data.
    pub fn restart(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = format!("{}/log", self.dir.path().display());
        let o = as_postgres(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            &self.data(),
            "-o",
            &opts,
            "-l",
            &log,
            "-w",
            "start",
        ]);
        assert!(
            o.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops at once (as a crash or an outage would).
    pub fn stop(&self) {
        let o = as_postgres(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        assert!(
            o.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A fresh database; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            postgres::NoTls,
        )
        .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}
