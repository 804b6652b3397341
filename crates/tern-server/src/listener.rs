//! The HTTP/1.1 listener: accepts TCP connections and serves each with
//! hyper, as `axum::serve` does, plus what it does not offer: a timeout
//! for the request head (a client that sends half a header, or keeps an
//! idle keep-alive connection, is closed after `http.header_timeout_secs`)
//! and the peer address on every request (`ConnectInfo<SocketAddr>`, the
//! address the rate limits count by). With `[tls]` set, each connection
//! is a TLS session first (rustls; ALPN `http/1.1`), handshaken within the
//! same header timeout. Each connection counts the bytes its socket took
//! ([`Written`], on every request), so a WebSocket can tell a peer that
//! stopped reading from a slow one.

use crate::config::{HttpConfig, TlsConfig};
use anyhow::Context;
use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Serves `router` on `listener` until `signal` resolves; then stops
/// accepting, lets each connection finish the request in hand (upgraded
/// WebSockets are no longer the listener's) and returns once all closed.
/// The TLS acceptor for `[tls]`, if set: reads the PEM files.
pub fn tls_acceptor(cfg: &TlsConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    if !cfg.enabled() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading tls.cert {}", cfg.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert {} holds no certificate",
        cfg.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .with_context(|| format!("reading tls.key {}", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert and tls.key do not make a certificate and its key")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: &HttpConfig,
    tls: Option<TlsAcceptor>,
    signal: impl Future<Output = tokio::time::Instant>,
) -> tokio::time::Instant {
    let (close_tx, close_rx) = watch::channel(false);
    let header_timeout = Duration::from_secs(cfg.header_timeout_secs);
    let send_buffer = cfg.send_buffer_bytes;
    let unsent = cfg.unsent_bytes;
    tokio::pin!(signal);
    let deadline = loop {
        let (tcp, peer) = tokio::select! {
            deadline = &mut signal => break deadline,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin; the connections that end free them.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small frames (an `ok`, a push) must leave at once: without
        // NODELAY, Nagle's algorithm holds them until the client's delayed
        // ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        // A fixed send buffer instead of the kernel's autotuning (up to
        // 4 MiB): a peer that stops reading then pushes back after
        // `send_buffer` bytes, not megabytes, and is cut off soon.
        if send_buffer > 0 {
            if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(send_buffer) {
                tracing::debug!(error = %e, "SO_SNDBUF");
            }
        }
        if unsent > 0 {
            limit_unsent(&tcp, unsent);
        }
        let (router, close_rx) = (router.clone(), close_rx.clone());
        match &tls {
            None => {
                tokio::spawn(connection(tcp, peer, router, header_timeout, close_rx));
            }
            Some(acceptor) => {
                let accept = acceptor.accept(tcp);
                tokio::spawn(async move {
                    match tokio::time::timeout(header_timeout, accept).await {
                        Ok(Ok(io)) => connection(io, peer, router, header_timeout, close_rx).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    };
    drop(listener);
    close_tx.send_replace(true);
    drop(close_rx);
    // HTTP requests in progress finish; idle keep-alive connections close
    // at once (upgraded ones are WebSocket sessions, counted apart).
    let open = close_tx.receiver_count();
    if open > 0 {
        tracing::info!("waiting for {open} HTTP connections to finish their request");
        if tokio::time::timeout_at(deadline, close_tx.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                left = close_tx.receiver_count(),
                "shutdown bound reached; HTTP connections still open"
            );
        }
    }
    deadline
}

/// The bytes a connection's socket has taken so far, shared by its
/// requests (an upgraded WebSocket reads it to see whether its writes
/// move). One relaxed add per socket write.
#[derive(Clone, Debug, Default)]
pub struct Written(Arc<AtomicU64>);

impl Written {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

async fn connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut close: watch::Receiver<bool>,
) {
    let written = Written::default();
    let linger = Linger::default();
    let io = Socket {
        io: Some(io),
        written: written.clone(),
        linger: linger.clone(),
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(written.clone());
        req.extensions_mut().insert(linger.clone());
        let mut router = router.clone();
        tower_service::Service::call(&mut router, req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "HTTP connection ended");
                }
                break;
            }
            _ = close.wait_for(|c| *c), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Set on a connection that was upgraded to a WebSocket: when its session
/// drops the socket, the connection is not closed at once but ends
/// gracefully (RFC 6455 7.1.1): our side is shut down (FIN) and what the
/// client still sends is read and dropped until it closes too, for at most
/// [`LINGER`]. Closing a socket with unread bytes makes the kernel send a
/// reset, which throws away what the client has not read yet, the close
/// frame with its code included; a session that ends on a read error (a
/// frame over the limit, a protocol violation) cannot read the rest itself.
#[derive(Clone, Default)]
pub struct Linger(Arc<AtomicBool>);

impl Linger {
    pub fn arm(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How long a closed WebSocket's connection is read and drained, at most.
pub const LINGER: Duration = Duration::from_secs(5);
/// Most bytes drained from it.
const LINGER_BYTES: usize = 4 << 20;

/// A connection's socket: counts what its writes took into [`Written`],
/// and lingers when dropped once its [`Linger`] is armed.
struct Socket<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    io: Option<I>,
    written: Written,
    linger: Linger,
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Socket<I> {
    fn io(&mut self) -> Pin<&mut I> {
        Pin::new(self.io.as_mut().expect("taken only on drop"))
    }

    fn count(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &r {
            self.written.0.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Socket<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Socket<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = self.io().poll_write(cx, buf);
        self.count(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = self.io().poll_write_vectored(cx, bufs);
        self.count(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Socket<I> {
    fn drop(&mut self) {
        if !self.linger.0.load(Ordering::Acquire) {
            return;
        }
        let (Some(mut io), Ok(rt)) = (self.io.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                let _ = io.shutdown().await;
                let mut buf = [0u8; 4096];
                let mut total = 0;
                while total < LINGER_BYTES {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        });
    }
}

/// Bounds the bytes the kernel holds unsent for this socket
/// (TCP_NOTSENT_LOWAT): writes wait once that much is queued and not yet
/// sent, whatever the send buffer's size, so a reader that stops reading
/// costs little kernel memory and copying before it is cut off.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn limit_unsent(tcp: &tokio::net::TcpStream, bytes: usize) {
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(bytes) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn limit_unsent(_tcp: &tokio::net::TcpStream, _bytes: usize) {}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    #[tokio::test]
    async fn unsent_limit_is_set_on_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        super::limit_unsent(&tcp, 16 * 1024);
        let got = socket2::SockRef::from(&tcp).tcp_notsent_lowat().unwrap();
        assert_eq!(got, 16 * 1024);
    }
}
