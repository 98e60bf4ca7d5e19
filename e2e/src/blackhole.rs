//! A TCP proxy between a service and its database that can be switched to a black hole: it
//! stops forwarding in both directions and keeps every socket open, so the service sees a
//! database that went silent without a reset (a partition, a host that froze), not one that
//! refused. Why a proxy and not a firewall rule: it needs no change to the shared machine's
//! packet filter (other engineers' tests run beside ours), and it ends with the test. What it
//! cannot show: the proxy's own kernel still acknowledges what the service sends, so the
//! service's TCP keepalive and `tcp_user_timeout` see a live peer; what it shows is that the
//! service's own deadlines answer (docs/security.md, "Deadlines").

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

pub struct BlackHoleProxy {
    pub port: u16,
    silent: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl BlackHoleProxy {
    /// Listens on a free port and forwards every connection to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> BlackHoleProxy {
        let port = crate::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the proxy listens");
        let silent = Arc::new(AtomicBool::new(false));
        let s = silent.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(forward(cr, sw, s.clone()));
                tokio::spawn(forward(sr, cw, s.clone()));
            }
        });
        BlackHoleProxy { port, silent, accept }
    }

    /// Stops forwarding (true) or forwards again (false); no socket is closed either way.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }
}

impl Drop for BlackHoleProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`; while silent, reads nothing more and holds what it read.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
