//! Browsers: CORS only for the configured origins, and `nosniff` on every answer.

use brightchat::config::CorsOrigins;
use reqwest::Method;

use crate::common::*;

/// Sends `method path` with an `Origin` (and, for a preflight, the method asked about).
async fn with_origin(
    server: &TestServer,
    method: Method,
    path: &str,
    origin: &str,
) -> reqwest::Response {
    let mut request = server
        .client
        .request(method.clone(), format!("{}{path}", server.base))
        .header("origin", origin);
    if method == Method::OPTIONS {
        request = request
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            );
    }
    request.send().await.expect("the server answers")
}

fn allowed(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn without_origins_configured_browsers_get_no_cors_and_every_answer_says_nosniff() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/api/members/me"),
        (Method::GET, "/no/such/route"),
        (Method::OPTIONS, "/api/groups"),
    ] {
        let response = with_origin(&server, method.clone(), path, "https://evil.example").await;
        assert_eq!(
            response
                .headers()
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{method} {path}"
        );
        assert_eq!(allowed(&response), None, "{method} {path}");
    }
}

#[tokio::test]
async fn listed_origins_may_call_the_api_and_others_may_not() {
    let server = TestServer::start_with(|c| {
        c.cors_origins = CorsOrigins::List(vec!["https://chat.example.org".into()]);
    })
    .await;
    let ada = server.member("Ada").await;

    let preflight = with_origin(
        &server,
        Method::OPTIONS,
        "/api/groups",
        "https://chat.example.org",
    )
    .await;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        allowed(&preflight).as_deref(),
        Some("https://chat.example.org")
    );
    let methods = preflight
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let answer = server
        .client
        .get(format!("{}/api/members/me", server.base))
        .header("origin", "https://chat.example.org")
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        allowed(&answer).as_deref(),
        Some("https://chat.example.org")
    );
    assert!(
        answer
            .headers()
            .get("access-control-expose-headers")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("retry-after"))
    );

    for origin in ["https://evil.example", "http://chat.example.org"] {
        let answer = with_origin(&server, Method::GET, "/api/members/me", origin).await;
        assert_eq!(allowed(&answer), None, "{origin}");
    }
}

#[tokio::test]
async fn a_star_lets_any_origin_in() {
    let server = TestServer::start_with(|c| c.cors_origins = CorsOrigins::Any).await;
    let answer = with_origin(&server, Method::GET, "/healthz", "https://anywhere.example").await;
    assert_eq!(allowed(&answer).as_deref(), Some("*"));
}
