//! The web client: `web/dist`, built by `scripts/build-web.sh` and committed, embedded in the
//! binary so a node serves it with no JavaScript toolchain around.
//!
//! - `/assets/<file>`: the bundle, with its content type, an ETag, a precompressed gzip copy
//!   when the client accepts it, and a year of caching when asked with the `?v=<hash>` that
//!   `index.html` puts on it (a new build changes the hash).
//! - `/` and the client's own pages (`/channels/…`, `/meetings/…`, `/login`, `/signup`):
//!   `index.html`, which the client routes itself. Meeting links (`PUBLIC_BASE_URL/meetings/<id>`)
//!   land here.
//! - Everything else, `/v1/...` included, keeps the API's JSON `404 not_found`.
//!
//! For work on the client, `WEB_DIR=web/dist` makes the node read the files from that folder
//! at each request instead (rebuild with `scripts/build-web.sh`, reload the page).

use std::sync::OnceLock;

use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha1::{Digest, Sha1};

use crate::error::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    gzip: Option<&'static [u8]>,
}

static INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../../web/dist/index.html"),
    gzip: None,
};

static ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/app.js"),
        gzip: Some(include_bytes!("../../../web/dist/assets/app.js.gz")),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/app.css"),
        gzip: Some(include_bytes!("../../../web/dist/assets/app.css.gz")),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../../web/dist/assets/favicon.svg"),
        gzip: None,
    },
];

/// The client's pages (its router in `web/src/ui/App.tsx`): exact paths and path prefixes.
const CLIENT_PAGES: [&str; 3] = ["/", "/login", "/signup"];
const CLIENT_PAGE_PREFIXES: [&str; 2] = ["/channels/", "/meetings/"];

/// The router's fallback: the client's files and pages, else the API's JSON 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method == Method::GET || method == Method::HEAD {
        let path = uri.path();
        let asset = match path.strip_prefix("/assets/") {
            Some(name) => ASSETS.iter().find(|asset| asset.name == name),
            None => Some(&INDEX).filter(|_| is_client_page(path)),
        };
        if let Some(asset) = asset {
            if let Some(dir) = std::env::var_os("WEB_DIR") {
                return serve_from_disk(asset, std::path::Path::new(&dir)).await;
            }
            let versioned = uri.query().is_some_and(|query| query.starts_with("v="));
            return serve(asset, &headers, versioned);
        }
    }
    ApiError::not_found("route").into_response()
}

async fn serve_from_disk(asset: &Asset, dir: &std::path::Path) -> Response {
    let file = if asset.name == INDEX.name { dir.join(asset.name) } else { dir.join("assets").join(asset.name) };
    match tokio::fs::read(&file).await {
        Ok(body) => {
            ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        Err(err) => ApiError::internal(format!("WEB_DIR file {}: {err}", file.display())).into_response(),
    }
}

fn is_client_page(path: &str) -> bool {
    CLIENT_PAGES.contains(&path) || CLIENT_PAGE_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

fn serve(asset: &'static Asset, request: &HeaderMap, versioned: bool) -> Response {
    let etag = etag_of(asset);
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = if request.get(header::IF_NONE_MATCH).is_some_and(|tag| tag.as_bytes() == etag.as_bytes()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let gzip = asset.gzip.filter(|_| accepts_gzip(request));
        let mut response = gzip.unwrap_or(asset.body).into_response();
        if gzip.is_some() {
            response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn accepts_gzip(request: &HeaderMap) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| param.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

/// A strong ETag from the content, computed once per asset.
fn etag_of(asset: &'static Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS.iter())
            .map(|asset| {
                let digest = Sha1::digest(asset.body);
                let hex: String = digest.iter().take(10).map(|byte| format!("{byte:02x}")).collect();
                (asset.name, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.iter().find(|(name, _)| *name == asset.name).map(|(_, tag)| tag.as_str()).unwrap_or("\"0\"")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn call(method: Method, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Router::new().fallback(fallback).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).map(|value| value.to_str().unwrap()).unwrap_or("")
    }

    #[tokio::test]
    async fn client_pages_serve_index_html() {
        for path in ["/", "/meetings/0190f1b0-1c2d-7e3f-8a4b-5c6d7e8f9012", "/channels/x", "/login", "/signup"] {
            let response = call(Method::GET, path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
        }
    }

    #[tokio::test]
    async fn api_and_unknown_paths_keep_the_json_404() {
        for (method, path) in [
            (Method::GET, "/v1/nothing"),
            (Method::GET, "/nothing"),
            (Method::GET, "/assets/missing.js"),
            (Method::POST, "/"),
            (Method::GET, "/channelsx"),
            (Method::GET, "/loginx"),
        ] {
            let response = call(method.clone(), path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(header(&response, header::CONTENT_TYPE), "application/json", "{method} {path}");
        }
    }

    #[tokio::test]
    async fn assets_have_types_caching_gzip_and_etags() {
        let plain = call(Method::GET, "/assets/app.js", &[]).await;
        assert_eq!(header(&plain, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
        assert_eq!(header(&plain, header::CACHE_CONTROL), "no-cache");
        assert_eq!(header(&plain, header::CONTENT_ENCODING), "");
        let etag = header(&plain, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10);

        let versioned = call(Method::GET, "/assets/app.js?v=abc", &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(header(&versioned, header::CONTENT_ENCODING), "gzip");
        assert_eq!(header(&versioned, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        let refused = call(Method::GET, "/assets/app.css", &[("accept-encoding", "gzip;q=0")]).await;
        assert_eq!(header(&refused, header::CONTENT_ENCODING), "");

        let again = call(Method::GET, "/assets/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let icon = call(Method::GET, "/assets/favicon.svg", &[]).await;
        assert_eq!(header(&icon, header::CONTENT_TYPE), "image/svg+xml");
    }
}
