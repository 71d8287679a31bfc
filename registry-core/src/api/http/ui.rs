//! The web console at `/nacos/`: plain ES modules and hand-written CSS, committed as source in
//! `registry-core/console/` and embedded in the binary, so neither building nor serving it needs
//! a JavaScript toolchain. The pages call the Open API and `console.rs` with the token from
//! `/nacos/v1/auth/login`; docs/console.md describes them.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::on;

use super::openapi::{Guard, Reply, Route, Table};

/// Every asset: file name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("../../../console/style.css")),
    ("app.js", JS, include_str!("../../../console/app.js")),
    ("api.js", JS, include_str!("../../../console/api.js")),
    ("ui.js", JS, include_str!("../../../console/ui.js")),
    ("namespaces.js", JS, include_str!("../../../console/namespaces.js")),
    ("services.js", JS, include_str!("../../../console/services.js")),
    ("configs.js", JS, include_str!("../../../console/configs.js")),
    ("cluster.js", JS, include_str!("../../../console/cluster.js")),
    ("users.js", JS, include_str!("../../../console/users.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("../../../console/index.html");

/// Console routes.
pub const TABLE: Table = Table {
    tag: "web console",
    guard: Guard::None,
    routes: &[
        Route::get("/nacos", "Redirects to `/nacos/`", |m| on(m, || async { Redirect::permanent("/nacos/") }))
            .reply(Reply::Html),
        Route::get("/nacos/", "The web console", |m| on(m, index)).reply(Reply::Html),
        Route::get("/nacos/index.html", "The web console", |m| on(m, index)).reply(Reply::Html),
        Route::get("/nacos/console-ui/{file}", "A file of the web console", |m| on(m, asset)).reply(Reply::Text),
    ],
};

async fn index() -> Response {
    served("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => served(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such console asset").into_response(),
    }
}

/// Revalidated on every load: the assets change with the binary, and they are small.
fn served(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        // `import ... from './x.js'` in any asset or the page must name an embedded asset.
        let sources = ASSETS.iter().map(|(_, _, body)| *body).chain([INDEX]);
        for source in sources {
            for part in source.split("from './").skip(1).chain(source.split("src=\"console-ui/").skip(1)) {
                let name = part.split(['\'', '"']).next().unwrap_or_default();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name} is imported but not embedded");
            }
        }
    }
}
