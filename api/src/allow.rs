//! `Allow` on 405 answers (RFC 9110 requires it): the methods each path accepts, read from the
//! OpenAPI document, plus the routes outside it.

use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse as _, Request, Response};

/// One path template and the methods it accepts.
struct Route {
    /// `None` stands for a `{parameter}` segment.
    segments: Vec<Option<String>>,
    methods: Vec<String>,
}

pub struct AllowTable(Vec<Route>);

impl AllowTable {
    /// From the OpenAPI document (JSON), with `extra` paths and their methods (`"GET, POST"`).
    pub fn new(spec: &str, extra: &[(&str, &str)]) -> Self {
        let mut routes = Vec::new();
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                routes.push(Route {
                    segments: segments(path),
                    methods,
                });
            }
        }
        for (path, listed) in extra {
            let mut methods: Vec<String> = listed.split(',').map(|m| m.trim().to_owned()).collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            routes.push(Route {
                segments: segments(path),
                methods,
            });
        }
        Self(routes)
    }

    fn allowed(&self, path: &str) -> Option<String> {
        let asked: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|route| {
                route.segments.len() == asked.len()
                    && route
                        .segments
                        .iter()
                        .zip(&asked)
                        .all(|(want, got)| want.as_deref().is_none_or(|w| w == *got))
            })
            .map(|route| route.methods.join(", "))
    }
}

fn segments(template: &str) -> Vec<Option<String>> {
    template
        .trim_end_matches('/')
        .split('/')
        .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
        .collect()
}

pub async fn allow_on_405<E: Endpoint>(
    table: &AllowTable,
    ep: E,
    req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = ep.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = table.allowed(&path)
        && let Ok(value) = HeaderValue::from_str(&methods)
    {
        response.headers_mut().insert("Allow", value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_concrete_paths() {
        let spec = r#"{"paths": {"/api/v1/files/{id}": {"get": {}, "delete": {}}, "/api/v1/files": {"post": {}}}}"#;
        let table = AllowTable::new(
            spec,
            &[("/healthz", "GET"), ("/app/files/{id}/delete", "GET, POST")],
        );
        let methods = table.allowed("/api/v1/files/abc").expect("matched");
        assert!(methods.contains("GET") && methods.contains("DELETE") && methods.contains("HEAD"));
        assert_eq!(table.allowed("/api/v1/files").as_deref(), Some("POST"));
        assert_eq!(table.allowed("/healthz").as_deref(), Some("GET, HEAD"));
        assert_eq!(
            table.allowed("/app/files/abc/delete").as_deref(),
            Some("GET, POST, HEAD")
        );
        assert_eq!(table.allowed("/nothing/here"), None);
    }
}
