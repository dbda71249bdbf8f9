//! A protocol upgrade (WebSocket) after the upstream's 101: bytes relayed both ways until either
//! side closes or the tunnel idles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Relays an upgraded connection both ways until either side closes or no byte has moved in
/// either direction for `idle` (`limits.idle_timeout`): an idle WebSocket would otherwise hold
/// its connection slot and an upstream socket forever (docs/attack-cases.md RES-08). WebSocket
/// clients that want a quiet connection kept open send pings, which count as traffic.
pub async fn tunnel(
    c: hyper::upgrade::Upgraded,
    u: hyper::upgrade::Upgraded,
    idle: std::time::Duration,
) {
    let moved = Arc::new(AtomicBool::new(false));
    let mut c = Watched {
        io: hyper_util::rt::TokioIo::new(c),
        moved: moved.clone(),
    };
    let mut u = Watched {
        io: hyper_util::rt::TokioIo::new(u),
        moved: moved.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
    tokio::pin!(copy);
    let mut tick = tokio::time::interval(idle);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut copy => return,
            _ = tick.tick() => {
                if !moved.swap(false, Ordering::Relaxed) {
                    tracing::debug!("upgraded connection idle for idle_timeout; closing");
                    return;
                }
            }
        }
    }
}

/// An upgraded stream that notes when bytes arrive.
struct Watched<T> {
    io: T,
    moved: Arc<AtomicBool>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
