//! A static directory at `/static/` (`HERALD_STATIC_DIR`, off by default). The directory is read
//! and hashed once at start: each file's size, content type and `ETag` (its SHA-256), and the
//! precompressed siblings (`.br`, `.gz`) it has. Only files found then are served, so no spelling
//! of `..` and no symlink out of the directory can reach anything else; symlinks whose target
//! lies outside are refused at start. Bodies are streamed from disk, never held whole.

use std::{
    collections::HashMap,
    io::{self, Read as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest as _, Sha256};
use tokio_util::io::ReaderStream;

/// Most files a static directory may hold; beyond it Herald refuses to start (a mistake, such as
/// pointing it at `/`, should not be read whole).
const MAX_FILES: usize = 100_000;

/// One file as found at start.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    size: u64,
    etag: HeaderValue,
    content_type: &'static str,
    /// Precompressed siblings: (`Content-Encoding`, path, size).
    encoded: Vec<(&'static str, PathBuf, u64)>,
}

/// The files of a static directory by their URL path below `/static/`.
#[derive(Debug, Clone)]
pub struct StaticDir {
    files: Arc<HashMap<String, Entry>>,
    cache_control: HeaderValue,
}

impl StaticDir {
    /// Reads and hashes every file under `root` (on the blocking pool); `cache_control` is sent
    /// with every file.
    pub async fn load(root: PathBuf, cache_control: &str) -> io::Result<Self> {
        let cache_control = HeaderValue::from_str(cache_control)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cache control is not a header value"))?;
        let files = tokio::task::spawn_blocking(move || scan(&root)).await.map_err(io::Error::other)??;
        Ok(Self { files: Arc::new(files), cache_control })
    }

    /// How many files it serves.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `GET /static/…` (and `HEAD`).
    pub fn router(self) -> Router {
        Router::new().route("/static/", get(serve)).route("/static/{*path}", get(serve)).with_state(self)
    }
}

fn scan(root: &Path) -> io::Result<HashMap<String, Entry>> {
    let root = root.canonicalize()?;
    let mut found = Vec::new();
    walk(&root, &root, &mut found)?;
    let targets: HashMap<&str, &PathBuf> = found.iter().map(|(name, path)| (name.as_str(), path)).collect();
    let mut files = HashMap::new();
    let mut total = 0u64;
    for (name, path) in &found {
        let (size, etag) = hash(path)?;
        total += size;
        tracing::info!(file = %name, size, "static file");
        let mut encoded = Vec::new();
        for (ext, encoding) in [("br", "br"), ("gz", "gzip")] {
            // The sibling's checked target, as for every file: never a path joined anew.
            if let Some(path) = targets.get(format!("{name}.{ext}").as_str()) {
                let size = std::fs::metadata(path)?.len();
                encoded.push((encoding, (*path).clone(), size));
            }
        }
        let etag = HeaderValue::from_str(&format!("\"{etag}\"")).map_err(io::Error::other)?;
        files.insert(name.clone(), Entry { path: path.clone(), size, etag, content_type: content_type(name), encoded });
    }
    tracing::info!(root = %root.display(), files = files.len(), total_bytes = total, "static directory loaded");
    Ok(files)
}

/// Collects `(url name, path)` of every regular file below `dir`, following symlinks that stay
/// inside `root` and refusing (with a warning) the ones that leave it.
fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // Hidden files and directories (`.git`, `.env`) are never published.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = match path.canonicalize() {
            Ok(target) => target,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "skipping a static entry that does not resolve");
                continue;
            }
        };
        if !target.starts_with(root) {
            tracing::warn!(path = %path.display(), "refusing a static entry that points outside the directory");
            continue;
        }
        let meta = std::fs::metadata(&target)?;
        if meta.is_dir() {
            // A symlinked directory inside the root would be walked twice (or forever).
            if entry.file_type()?.is_symlink() {
                continue;
            }
            walk(root, &path, found)?;
        } else if meta.is_file() {
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let Some(name) = relative.to_str() else {
                tracing::warn!(path = %path.display(), "skipping a static file whose name is not UTF-8");
                continue;
            };
            found.push((name.replace(std::path::MAIN_SEPARATOR, "/"), target));
            if found.len() > MAX_FILES {
                return Err(io::Error::other(format!("the static directory holds more than {MAX_FILES} files")));
            }
        }
    }
    Ok(())
}

/// The file's size and the hex of its SHA-256, read in chunks.
fn hash(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Ok((size, digest.iter().take(16).map(|b| format!("{b:02x}")).collect()))
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// The URL path below `/static/`, percent-decoded and split into segments; `None` for any dot
/// segment, empty segment or separator smuggled in an escape (they name nothing served).
fn file_name(uri: &Uri) -> Option<String> {
    let raw = uri.path().strip_prefix("/static/")?;
    let decoded = percent_decode(raw)?;
    let trimmed = decoded.strip_suffix('/').unwrap_or(&decoded);
    if trimmed.is_empty() {
        return Some(String::new());
    }
    let ok = trimmed.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']));
    ok.then(|| trimmed.to_owned())
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `accept` (an `Accept-Encoding` value) takes `coding` (not with `q=0`).
fn accepts(accept: &str, coding: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        let name = params.next().unwrap_or_default();
        let refused = params.any(|p| p.replace(' ', "").trim_start_matches("q=").parse::<f32>() == Ok(0.0));
        name.eq_ignore_ascii_case(coding) && !refused
    })
}

async fn serve(State(dir): State<StaticDir>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(name) = file_name(&uri) else { return StatusCode::NOT_FOUND.into_response() };
    let index = if name.is_empty() { "index.html".to_owned() } else { format!("{name}/index.html") };
    let Some(entry) = dir.files.get(&name).or_else(|| dir.files.get(&index)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (path, size, encoding) = entry
        .encoded
        .iter()
        .find(|(coding, _, _)| accepts(accept, coding))
        .map_or((&entry.path, entry.size, None), |(coding, path, size)| (path, *size, Some(*coding)));
    // Each representation has its own tag: the plain file's hash, with the coding appended.
    let etag = match encoding {
        None => entry.etag.clone(),
        Some(coding) => {
            let plain = entry.etag.to_str().unwrap_or_default().trim_end_matches('"');
            HeaderValue::from_str(&format!("{plain}-{coding}\"")).unwrap_or_else(|_| entry.etag.clone())
        }
    };
    let mut response =
        Response::builder().header(header::ETAG, etag.clone()).header(header::CACHE_CONTROL, dir.cache_control.clone());
    if !entry.encoded.is_empty() {
        response = response.header(header::VARY, "accept-encoding");
    }
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == "*" || tag.trim() == etag));
    if unchanged {
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default();
    }
    // The path checked at start, opened without following a symlink put there since.
    let mut open = tokio::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    open.custom_flags(libc::O_NOFOLLOW);
    let file = match open.open(path).await {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "a static file loaded at start is gone");
            return StatusCode::NOT_FOUND.into_response();
        }
    };
    if let Some(coding) = encoding {
        response = response.header(header::CONTENT_ENCODING, coding);
    }
    // A file rewritten since start is sent as it is now (its tag is the old one until a restart);
    // the length is the open file's, and the body stops there.
    let size = match file.metadata().await {
        Ok(meta) if meta.len() != size => {
            tracing::warn!(path = %path.display(), "a static file changed since start; restart to re-hash it");
            meta.len()
        }
        _ => size,
    };
    response
        .header(header::CONTENT_TYPE, entry.content_type)
        .header(header::CONTENT_LENGTH, size)
        .body(Body::from_stream(ReaderStream::new(tokio::io::AsyncReadExt::take(file, size))))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_and_dot_segments_name_nothing() {
        let name = |p: &str| file_name(&p.parse::<Uri>().expect("uri"));
        assert_eq!(name("/static/app.js").as_deref(), Some("app.js"));
        assert_eq!(name("/static/a%20b/c.css").as_deref(), Some("a b/c.css"));
        assert_eq!(name("/static/").as_deref(), Some(""));
        assert_eq!(name("/static/docs/").as_deref(), Some("docs"));
        for bad in ["/static/../x", "/static/%2e%2e/x", "/static/..%2fx", "/static/a/%2E%2E/%2E%2E/x", "/static/a//b"] {
            assert_eq!(name(bad), None, "{bad}");
        }
        assert_eq!(name("/static/%zz"), None);
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("br;q=0.5", "br"));
        assert!(!accepts("br;q=0, gzip", "br"));
        assert!(!accepts("identity", "gzip"));
    }
}
