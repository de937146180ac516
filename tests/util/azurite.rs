//! A real Azurite blob server for the test binary: started once on a free
//! 127.0.0.1 port with its own data directory, stopped when the test process
//! exits (a small shell watchdog kills exactly the PID it started).
//!
//! A missing `azurite-blob` fails the tests with an install hint; there is
//! no silent skip.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hopstage::config::{Target, AZURITE_ACCOUNT, AZURITE_KEY};
use hopstage::store::BlobStore;

/// A running Azurite.
pub struct Azurite {
    pub port: u16,
    /// PID of the Azurite process (for CPU accounting and stopping it).
    pub pid: u32,
    _watchdog: std::process::Child,
    _data: tempfile::TempDir,
}

static SHARED: OnceLock<Azurite> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Azurite {
    /// The server shared by this test binary.
    pub fn shared() -> &'static Azurite {
        SHARED.get_or_init(Azurite::start)
    }

    fn start() -> Azurite {
        let bin = std::env::var("AZURITE_BLOB").unwrap_or_else(|_| "azurite-blob".into());
        if Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!(
                "azurite-blob not found: install it with `npm install -g azurite` (scripts/test.sh does this), or set AZURITE_BLOB"
            );
        }
        let data = tempfile::tempdir().expect("azurite dir");
        let port = free_port();
        let me = std::process::id();
        // The watchdog starts Azurite, then kills that PID once this test process is gone.
        let script = format!(
            "{bin} --blobHost 127.0.0.1 --blobPort {port} --location '{}' --silent --skipApiVersionCheck --disableTelemetry >/dev/null 2>&1 & a=$!; echo $a; while kill -0 {me} 2>/dev/null && kill -0 $a 2>/dev/null; do sleep 1; done; kill $a 2>/dev/null",
            data.path().display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn azurite watchdog");
        let mut line = String::new();
        {
            use std::io::BufRead;
            let out = child.stdout.take().expect("stdout");
            let mut r = std::io::BufReader::new(out);
            r.read_line(&mut line).expect("azurite pid");
        }
        let pid: u32 = line.trim().parse().expect("azurite pid number");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Azurite {
            port,
            pid,
            _watchdog: child,
            _data: data,
        }
    }

    /// Blob endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// A connection string for this server.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// A store client for `container`.
    pub fn store(&self, container: &str) -> BlobStore {
        let target = Target {
            account: AZURITE_ACCOUNT.into(),
            endpoint: url::Url::parse(&format!("{}/", self.endpoint())).expect("url"),
            container: container.into(),
            path: String::new(),
            auth: hopstage::auth::Auth::shared_key(AZURITE_ACCOUNT, AZURITE_KEY).expect("key"),
        };
        BlobStore::new(&target, Arc::default()).expect("store")
    }

    /// Creates a container.
    pub fn create_container(&self, name: &str) {
        let store = self.store(name);
        rt().block_on(store.create_container())
            .expect("create container");
    }
}

/// A small runtime for direct store calls from tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
