//! A moto S3 server on loopback (`WRAPFLOW_TEST_MOTO`, installed by `scripts/test.sh`), and a
//! TCP proxy in front of it that a test can take down and bring back, to stage an outage.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

pub fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests through scripts/test.sh"))
}

/// A loopback port that no other caller in this test binary has been given. Tests run in
/// parallel, and the kernel may hand a just-released port out again (or the port of a proxy
/// staging an outage), so two servers could be told to use the same port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A moto S3 server on loopback, stopped on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(tool("WRAPFLOW_TEST_MOTO"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut server = S3Server { child, port };
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited before listening on port {port}: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, name: &str) {
        // moto's listener accepts connections before its app is ready, then resets them (seen
        // in CI): retry the whole request for a while before failing.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.put_bucket(name) {
                Ok(resp) if resp.starts_with("HTTP/1.1 200") => return,
                Ok(resp) if Instant::now() >= deadline => panic!("create bucket: {resp}"),
                Err(e) if Instant::now() >= deadline => {
                    panic!("moto_server on port {} does not answer: {e}", self.port)
                }
                other => eprintln!("create_bucket: {other:?}; retrying"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn put_bucket(&self, name: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok(resp)
    }

    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .unwrap(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3_options(endpoint: &str) -> String {
    format!(
        "'aws_endpoint' '{endpoint}', 'aws_allow_http' 'true', 'aws_region' 'us-east-1', \
         'aws_access_key_id' 'test', 'aws_secret_access_key' 'test'"
    )
}

pub fn s3_sink_options(endpoint: &str) -> String {
    format!(
        ", aws_endpoint = '{endpoint}', aws_allow_http = 'true', aws_region = 'us-east-1', \
         aws_access_key_id = 'test', aws_secret_access_key = 'test'"
    )
}

/// Forwards loopback TCP connections to a server; `down` refuses and cuts connections as a dead
/// server would, `up` serves again on the same port.
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    running: Mutex<Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let p = Proxy { port: free_port(), upstream, running: Mutex::new(None), conns: Arc::default() };
        p.up();
        p
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) => assert!(Instant::now() < deadline, "proxy cannot bind {}: {e}", self.port),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, conns, upstream) = (stop.clone(), self.conns.clone(), self.upstream);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                conns.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        *self.running.lock().unwrap() = Some((stop, thread));
    }

    pub fn down(&self) {
        if let Some((stop, thread)) = self.running.lock().unwrap().take() {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

/// Copies every object under `prefix` into `dir`, keeping relative paths.
pub async fn download(store: &Arc<dyn ObjectStore>, prefix: &str, dir: &std::path::Path) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let p = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.list(Some(&p)).try_collect().await.unwrap();
    for m in metas {
        let rel = m.location.as_ref().strip_prefix(prefix).unwrap().trim_start_matches('/').to_string();
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        super::write(&dir.join(rel), &bytes);
    }
}
