//! `tern bench media`: upload `--count` files of `--size` bytes with
//! `--concurrency` uploads in flight (one user per slot), then download
//! them all the same way. Reports MB/s each way, per-request latency and,
//! with `--server-pid`, the server's peak RSS during the uploads and what
//! that peak held per concurrent upload.

use super::client::{run_prefix, Target};
use super::stats::{cpu_time, rss_kb};
use super::MediaArgs;
use anyhow::{ensure, Context};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One run's figures (MB = 10^6 bytes).
#[derive(Serialize)]
pub struct MediaReport {
    pub scenario: &'static str,
    pub size_bytes: u64,
    pub count: usize,
    pub concurrency: usize,
    pub upload_s: f64,
    pub upload_mb_per_s: f64,
    pub upload_p50_ms: f64,
    pub upload_p99_ms: f64,
    pub download_s: f64,
    pub download_mb_per_s: f64,
    pub download_p50_ms: f64,
    pub download_p99_ms: f64,
    /// Downloads whose bytes differed from what was uploaded.
    pub mismatches: u64,
    /// The bench's own CPU over both phases, seconds.
    pub client_cpu_s: f64,
    pub server_rss_kb_before: Option<u64>,
    /// Highest server RSS sampled (every 20 ms) while uploading.
    pub server_rss_kb_upload_peak: Option<u64>,
    /// (peak - before) / concurrency.
    pub server_rss_kb_per_upload: Option<f64>,
}

/// Parses `1048576`, `64k`, `1M`, `20MiB`-style sizes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 1048576, 64k or 20M"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn percentile_ms(lat: &mut [Duration], q: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.sort_unstable();
    let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i].as_secs_f64() * 1e3
}

/// Distinct bytes per file (so no layer can dedup them), cheap to make.
fn file_bytes(size: u64, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size as usize);
    while (v.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size as usize);
    Bytes::from(v)
}

pub async fn run(a: MediaArgs) -> anyhow::Result<()> {
    let size = a.size;
    ensure!(
        size > 0 && a.count > 0 && a.concurrency > 0,
        "--size, --count and --concurrency must be positive"
    );
    let c = &a.common;
    let target = Target::new(&c.url).await?;
    let prefix = run_prefix(&c.prefix);
    let slots = a.concurrency.min(a.count);
    let names: Vec<String> = (0..slots).map(|i| format!("{prefix}-m{i}")).collect();
    let tokens = target.users(&names, c.setup_concurrency, false).await?;
    let clients: Vec<_> = tokens.iter().map(|t| target.client_for(t)).collect();
    // One body per slot, reused for each of its files: a fresh seed per
    // slot keeps the bytes distinct across concurrent uploads.
    let bodies: Vec<Bytes> = (0..slots).map(|i| file_bytes(size, i as u64 + 1)).collect();
    let digests: Vec<String> = bodies
        .iter()
        .map(|b| hex::encode(Sha256::digest(b)))
        .collect();

    let rss_before = c.server_pid.and_then(rss_kb);
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = c.server_pid.map(|pid| {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });

    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let uploaded: Vec<(usize, String, Duration)> = stream::iter(0..a.count)
        .map(|k| {
            let slot = k % slots;
            let (client, body) = (&clients[slot], bodies[slot].clone());
            let mime = a.mime.as_str();
            async move {
                let t = Instant::now();
                let up = client
                    .upload_media(body, mime, Some("bench.bin"))
                    .await
                    .with_context(|| format!("upload {k}"))?;
                ensure!(
                    up.size == size,
                    "upload {k}: the server stored {} bytes",
                    up.size
                );
                anyhow::Ok((slot, up.media, t.elapsed()))
            }
        })
        .buffer_unordered(slots)
        .try_collect()
        .await?;
    let upload_s = t0.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        s.await.ok();
    }
    let rss_peak = rss_before.map(|_| peak.load(Ordering::Relaxed));

    let t1 = Instant::now();
    let downloaded: Vec<(bool, Duration)> = stream::iter(uploaded.iter())
        .map(|(slot, media, _)| {
            let client = &clients[*slot];
            let want = &digests[*slot];
            async move {
                let t = Instant::now();
                let bytes = client
                    .download_media(media, None)
                    .await
                    .with_context(|| format!("download {media}"))?;
                let took = t.elapsed();
                let same =
                    bytes.len() as u64 == size && hex::encode(Sha256::digest(&bytes)) == *want;
                anyhow::Ok((same, took))
            }
        })
        .buffer_unordered(slots)
        .try_collect()
        .await?;
    let download_s = t1.elapsed().as_secs_f64();
    let client_cpu_s = (cpu_time() - cpu0).as_secs_f64();

    let total_mb = (size as f64 * a.count as f64) / 1e6;
    let mut up_lat: Vec<Duration> = uploaded.iter().map(|u| u.2).collect();
    let mut down_lat: Vec<Duration> = downloaded.iter().map(|d| d.1).collect();
    let report = MediaReport {
        scenario: "media",
        size_bytes: size,
        count: a.count,
        concurrency: slots,
        upload_s,
        upload_mb_per_s: total_mb / upload_s,
        upload_p50_ms: percentile_ms(&mut up_lat, 0.5),
        upload_p99_ms: percentile_ms(&mut up_lat, 0.99),
        download_s,
        download_mb_per_s: total_mb / download_s,
        download_p50_ms: percentile_ms(&mut down_lat, 0.5),
        download_p99_ms: percentile_ms(&mut down_lat, 0.99),
        mismatches: downloaded.iter().filter(|d| !d.0).count() as u64,
        client_cpu_s,
        server_rss_kb_before: rss_before,
        server_rss_kb_upload_peak: rss_peak,
        server_rss_kb_per_upload: rss_before
            .zip(rss_peak)
            .map(|(b, p)| p.saturating_sub(b) as f64 / slots as f64),
    };
    emit(c.json, &report)?;
    ensure!(
        report.mismatches == 0,
        "{} downloads differ from their upload",
        report.mismatches
    );
    Ok(())
}

fn emit(json: bool, r: &MediaReport) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let kb = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} KB"));
    let rows = [
        ("scenario", "media".to_owned()),
        (
            "files",
            format!(
                "{} x {} bytes, {} at once",
                r.count, r.size_bytes, r.concurrency
            ),
        ),
        (
            "upload",
            format!(
                "{:.1} MB/s ({:.2} s), p50 {:.1} ms, p99 {:.1} ms",
                r.upload_mb_per_s, r.upload_s, r.upload_p50_ms, r.upload_p99_ms
            ),
        ),
        (
            "download",
            format!(
                "{:.1} MB/s ({:.2} s), p50 {:.1} ms, p99 {:.1} ms",
                r.download_mb_per_s, r.download_s, r.download_p50_ms, r.download_p99_ms
            ),
        ),
        ("mismatches", r.mismatches.to_string()),
        ("client cpu", format!("{:.2} s", r.client_cpu_s)),
        ("server rss before", kb(r.server_rss_kb_before)),
        ("server rss upload peak", kb(r.server_rss_kb_upload_peak)),
        (
            "server rss per upload",
            r.server_rss_kb_per_upload
                .map_or("-".to_owned(), |v| format!("{v:.0} KB")),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<24}{v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("20M"), Ok(20 << 20));
        assert_eq!(parse_size("20MiB"), Ok(20 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("many").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }
}
