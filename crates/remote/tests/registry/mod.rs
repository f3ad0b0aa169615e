//! Starts the real CNCF distribution registry (Debian's `docker-registry` 2.8.2, unpacked into
//! the test cache by `scripts/fetch-models registry`) on a free loopback port with filesystem
//! storage in a temporary directory; stopped when dropped. Shared by the remote crate's and the
//! CLI's tests (`#[path]` include).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Storage and config directory.
    pub dir: tempfile::TempDir,
}

/// The user and password the `htpasswd` variant accepts.
pub const USER: &str = "freehold";
/// See [`USER`].
pub const PASSWORD: &str = "s3cret-pass";
/// bcrypt (cost 4, fast for tests) of [`PASSWORD`], made once with Python's `crypt`.
const HTPASSWD: &str = "freehold:$2b$04$QDwBgmWY5i3TV/wnuDvqD.aQi9ER0.tO4.wXf1R/KQZplRcfQqVHu\n";

fn binary() -> PathBuf {
    testdata::require("tools/docker-registry/usr/bin/docker-registry", "registry")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    /// Starts a registry without authentication.
    pub fn start() -> Registry {
        Self::start_with(false)
    }

    /// Starts a registry that wants basic authentication ([`USER`] / [`PASSWORD`]).
    pub fn start_with_htpasswd() -> Registry {
        Self::start_with(true)
    }

    fn start_with(htpasswd: bool) -> Registry {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut last_err = String::new();
        // The port is picked then released; retry if something else took it meanwhile.
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let auth = if htpasswd {
                let p = dir.path().join("htpasswd");
                std::fs::write(&p, HTPASSWD).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: freehold-test\n    path: {}\n",
                    p.display()
                )
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth}http:\n  addr: {host}\n",
                storage.display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(s) = get_status(&host, "/v2/") {
                    if s == 200 || s == 401 {
                        return Registry { child, host, dir };
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!(
                        "exited with {status}: {}",
                        std::fs::read_to_string(dir.path().join("registry.log"))
                            .unwrap_or_default()
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("docker-registry did not answer on {host} within 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry would not start: {last_err}");
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
