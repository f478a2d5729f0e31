//! The embedded server, talked to directly, answers every row of
//! LBASEDB_API.md as the upstream does, errors included.

use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{Sent, TestApp, spawn_app};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), json_of(response).await)
}

fn le_f64(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_i64(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn version_answers_the_upstream_api_version() {
    let app = spawn_app().await;
    let response = app.upstream_client.get(app.direct("version")).sent().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"version":"0.1.10"}"#);
}

#[tokio::test]
async fn feeds_are_created_listed_renamed_and_deleted() {
    let app = spawn_app().await;
    let c = &app.upstream_client;

    let created = c.post(app.direct("feed")).json(&json!({"name": "xy"})).sent().await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.text().await.unwrap(), "");
    let list = c.get(app.direct("feed")).sent().await;
    assert_eq!(list.text().await.unwrap(), r#"[{"name":"xy"}]"#);

    let again = c.post(app.direct("feed")).json(&json!({"name": "xy"})).sent().await;
    assert_eq!(
        error_of(again).await,
        (400, json!({"error": "entity already exists", "detail": "xy"}))
    );
    let bad = c.post(app.direct("feed")).json(&json!({"name": "bad name/.."})).sent().await;
    assert_eq!(
        error_of(bad).await,
        (400, json!({"error": "invalid input parameter", "detail": "bad name/.."}))
    );

    let renamed = c.patch(app.direct("feed?name=xy")).json(&json!({"name": "ab"})).sent().await;
    assert_eq!(renamed.status(), 204);
    assert_eq!(json_of(c.get(app.direct("feed")).sent().await).await, json!([{"name": "ab"}]));

    let deleted = c.delete(app.direct("feed?name=ab")).sent().await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(json_of(c.get(app.direct("feed")).sent().await).await, json!([]));
    let gone = c.delete(app.direct("feed?name=ab")).sent().await;
    assert_eq!(error_of(gone).await, (400, json!({"error": "entity not found", "detail": "ab"})));
}

#[tokio::test]
async fn columns_are_created_listed_renamed_and_deleted() {
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("x", "Float64"), ("b", "Bytes[4]")]).await;

    let list = json_of(c.get(app.direct("col?feed=xy")).sent().await).await;
    assert_eq!(
        list,
        json!([{"name": "b", "datatype": "Bytes[4]"}, {"name": "x", "datatype": "Float64"}])
    );
    let renamed =
        c.patch(app.direct("col?feed=xy&name=x")).json(&json!({"name": "z"})).sent().await;
    assert_eq!(renamed.status(), 204);
    let deleted = c.delete(app.direct("col?feed=xy&name=b")).sent().await;
    assert_eq!(deleted.status(), 204);
    let list = c.get(app.direct("col?feed=xy")).sent().await;
    assert_eq!(
        list.text().await.unwrap(),
        r#"[{"name":"z","datatype":"Float64"}]"#,
        "the upstream's key order"
    );

    let unknown_feed = c.get(app.direct("col?feed=nope")).sent().await;
    assert_eq!(
        error_of(unknown_feed).await,
        (400, json!({"error": "entity not found", "detail": "nope"}))
    );
}

#[tokio::test]
async fn an_unknown_datatype_is_a_clean_400_and_the_server_goes_on() {
    let app = spawn_app().await;
    app.create_feed("xy", &[]).await;
    for datatype in ["Nope", "Bytes[0]", "Bytes[x]", "Blob"] {
        let response = app
            .upstream_client
            .post(app.direct("col?feed=xy"))
            .json(&json!({"name": "z", "datatype": datatype}))
            .sent()
            .await;
        assert_eq!(
            error_of(response).await,
            (400, json!({"error": "invalid input parameter", "detail": "Unknown datatype"})),
            "{datatype}"
        );
    }
    let list = app.upstream_client.get(app.direct("col?feed=xy")).sent().await;
    assert_eq!(list.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn size_is_read_and_set() {
    let app = spawn_app().await;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let put =
        app.upstream_client.put(app.direct("size?feed=xy")).json(&json!({"size": 3})).sent().await;
    assert_eq!(put.status(), 204);
    let size = app.upstream_client.get(app.direct("size?feed=xy")).sent().await;
    assert_eq!(size.text().await.unwrap(), r#"{"size":3}"#);
    let data = json_of(
        app.upstream_client.get(app.direct("data?feed=xy&ix=0&size=3&col[]=x")).sent().await,
    )
    .await;
    assert_eq!(data, json!({"x": [0, 0, 0]}), "rows appended as zeros");
}

#[tokio::test]
async fn data_is_appended_read_saved_and_patched() {
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("x", "Float64"), ("y", "Int64"), ("b", "Bytes[3]")]).await;

    let pushed = c
        .post(app.direct("data?feed=xy"))
        .json(&json!({"x": [1.5, 2.5, 3.5], "y": [1, 2, 3], "b": ["AQID", "BAUG", "BwgJ"]}))
        .sent()
        .await;
    assert_eq!(pushed.status(), 204);
    let got = c.get(app.direct("data?feed=xy&ix=0&size=3&col[]=x&col[]=b")).sent().await;
    assert_eq!(got.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(json_of(got).await, json!({"x": [1.5, 2.5, 3.5], "b": ["AQID", "BAUG", "BwgJ"]}));

    // PUT zeroes the columns it does not list; PATCH keeps them.
    let saved = c.put(app.direct("data?feed=xy&ix=1")).json(&json!({"x": [9.0]})).sent().await;
    assert_eq!(saved.status(), 204);
    let patched = c.patch(app.direct("data?feed=xy&ix=2")).json(&json!({"y": [7]})).sent().await;
    assert_eq!(patched.status(), 204);
    let all = json_of(c.get(app.direct("data?feed=xy&ix=0&size=3&col=x&col=y")).sent().await).await;
    assert_eq!(all, json!({"x": [1.5, 9.0, 3.5], "y": [1, 0, 7]}));
}

#[tokio::test]
async fn data_errors_answer_the_upstream_error_json() {
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("x", "Float64")]).await;

    let cases = [
        ("data?feed=xy&size=1", json!({"error": "param required", "detail": "ix"})),
        ("data?feed=xy&ix=0", json!({"error": "param required", "detail": "size"})),
        (
            "data?feed=xy&ix=0&size=5&col[]=x",
            json!({"error": "unexpected end of file", "detail": "5"}),
        ),
        ("data?feed=nope&ix=0&size=0", json!({"error": "entity not found", "detail": "nope"})),
        ("bytes?feed=xy&ix=0&size=0", json!({"error": "param required", "detail": "col[]"})),
        ("raw?feed=xy&col=x&ix=0", json!({"error": "param required", "detail": "size"})),
    ];
    for (path, expected) in cases {
        let response = c.get(app.direct(path)).sent().await;
        assert_eq!(error_of(response).await, (400, expected), "{path}");
    }

    // Where the upstream's worker would panic (a value of the wrong type),
    // the embedded one refuses, and writes nothing.
    let wrong_type = c.post(app.direct("data?feed=xy")).json(&json!({"x": [1]})).sent().await;
    let (status, body) = error_of(wrong_type).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid data")));
    assert_eq!(app.size_of("xy").await, 0);

    let not_json = c.post(app.direct("data?feed=xy")).body("{").sent().await;
    assert_eq!(not_json.status(), 400);
    assert_eq!(not_json.text().await.unwrap(), "Content type error");
    let bad_json = c
        .post(app.direct("data?feed=xy"))
        .header(CONTENT_TYPE, "application/json")
        .body("{")
        .sent()
        .await;
    assert_eq!(bad_json.status(), 400);
    assert!(bad_json.text().await.unwrap().starts_with("Json deserialize error: "));
}

#[tokio::test]
async fn bytes_are_column_major_little_endian() {
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("x", "Float64"), ("y", "Int64")]).await;

    let mut body = le_f64(&[1.0, 2.0]);
    body.extend(le_i64(&[10, 20]));
    let pushed =
        c.post(app.direct("bytes?feed=xy&col[]=x&col[]=y")).body(body.clone()).sent().await;
    assert_eq!(pushed.status(), 204);
    let got = c.get(app.direct("bytes?feed=xy&ix=0&size=2&col[]=x&col[]=y")).sent().await;
    // The upstream sends none; ours names the bytes as bytes, so that no
    // browser sniffs them into a page (see the security tests).
    assert_eq!(
        got.headers()[CONTENT_TYPE],
        "application/octet-stream",
        "binary answers are octet-stream"
    );
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);

    // PUT zeroes the others, PATCH keeps them, DELETE zeroes the rows.
    let saved = c.put(app.direct("bytes?feed=xy&ix=1&col=x")).body(le_f64(&[5.0])).sent().await;
    assert_eq!(saved.status(), 204);
    let patched = c.patch(app.direct("bytes?feed=xy&ix=0&col=y")).body(le_i64(&[7])).sent().await;
    assert_eq!(patched.status(), 204);
    let data =
        json_of(c.get(app.direct("data?feed=xy&ix=0&size=2&col[]=x&col[]=y")).sent().await).await;
    assert_eq!(data, json!({"x": [1.0, 5.0], "y": [7, 0]}));
    let reset = c.delete(app.direct("bytes?feed=xy&ix=0&size=1&col%5B%5D=y")).sent().await;
    assert_eq!(reset.status(), 204);
    let y = c.get(app.direct("bytes?feed=xy&ix=0&size=2&col%5B%5D=y")).sent().await;
    assert_eq!(y.bytes().await.unwrap().to_vec(), le_i64(&[0, 0]));

    let past_end = c.patch(app.direct("bytes?feed=xy&ix=2&col=y")).body(le_i64(&[1])).sent().await;
    assert_eq!(
        error_of(past_end).await,
        (400, json!({"error": "unexpected end of file", "detail": "3"}))
    );
    assert_eq!(app.size_of("xy").await, 2);
}

#[tokio::test]
async fn raw_reads_and_overwrites_one_column_in_place() {
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("y", "Int64")]).await;
    c.put(app.direct("size?feed=xy")).json(&json!({"size": 3})).sent().await;

    let set = c.post(app.direct("raw?feed=xy&col=y&ix=1")).body(le_i64(&[4, 5])).sent().await;
    assert_eq!(set.status(), 204);
    let got = c.get(app.direct("raw?feed=xy&col=y&ix=0&size=3")).sent().await;
    assert_eq!(got.headers()[CONTENT_TYPE], "application/octet-stream");
    assert_eq!(got.bytes().await.unwrap().to_vec(), le_i64(&[0, 4, 5]));

    let grows = c.post(app.direct("raw?feed=xy&col=y&ix=2")).body(le_i64(&[1, 2])).sent().await;
    assert_eq!(
        error_of(grows).await,
        (400, json!({"error": "unexpected end of file", "detail": "4"}))
    );
    assert_eq!(app.size_of("xy").await, 3, "raw never grows a feed");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405_with_allow() {
    let app = spawn_app().await;
    let missing = app.upstream_client.get(app.direct("nope")).sent().await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().await.unwrap(), "");

    let cases = [("version", "GET"), ("size", "GET, PUT"), ("raw", "GET, POST")];
    for (path, allow) in cases {
        let response = app.upstream_client.delete(app.direct(path)).sent().await;
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()[ALLOW], allow, "{path}");
    }
}

#[tokio::test]
async fn a_repeated_key_is_read_last_wins_as_upstream() {
    // The leniency the proxy must guard against, shown on the upstream.
    let app: TestApp = spawn_app().await;
    app.create_x_feeds(&["a", "b"]).await;
    app.upstream_client.post(app.direct("data?feed=b")).json(&json!({"x": [42]})).sent().await;
    let got =
        app.upstream_client.get(app.direct("data?feed=a&feed=b&ix=0&size=1&col=x")).sent().await;
    assert_eq!(json_of(got).await, json!({"x": [42]}));
}

#[tokio::test]
async fn missing_optional_parameters_answer_as_the_real_server() {
    // Read from the real server's handlers (fomalhaut88/lbasedb-api,
    // src/resource/*.rs) and checked against it request by request
    // (bench/compare_upstream.py).
    let app = spawn_app().await;
    let c = &app.upstream_client;
    app.create_feed("xy", &[("x", "Int64")]).await;
    let error = |kind: &str, detail: &str| json!({"error": kind, "detail": detail});
    let cases = [
        (
            c.post(app.direct("col?feed=xy")).json(&json!({"name": "z"})),
            error("param required", "datatype"),
        ),
        (
            c.patch(app.direct("col?feed=xy")).json(&json!({"name": "z"})),
            error("param required", "name"),
        ),
        (c.delete(app.direct("col?feed=xy")), error("param required", "name")),
        (
            c.get(app.direct("bytes?feed=xy&ix=zz&size=1&col%5B%5D=x")),
            error("invalid input parameter", "feed=xy&ix=zz&size=1&col[]=x"),
        ),
        (
            c.get(app.direct("data?feed=xy&ix=zz&size=1&col=x")),
            error("invalid input parameter", "feed=xy&ix=zz&size=1&col=x"),
        ),
    ];
    for (request, expected) in cases {
        let response = request.sent().await;
        assert_eq!(response.status(), 400);
        assert_eq!(json_of(response).await, expected);
    }
    // `/data` writes read their query with the plain form decoder, as the
    // real server's `web::Query` does: no lists, no repeated keys.
    for query in ["feed=xy&feed=xy", "feed=xy&col=x"] {
        let response =
            c.post(app.direct(&format!("data?{query}"))).json(&json!({"x": [1]})).sent().await;
        assert_eq!(response.status(), 400, "{query}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("Query deserialize error: "), "{query}: {text}");
    }
    assert_eq!(app.size_of("xy").await, 0);
}
