//! HTTP authentication, one pluggable option of the HTTP sources: the
//! signatures the hub computes are what independent implementations
//! compute (Python's `urllib`, `hashlib` and `hmac` over OpenSSL's SM3,
//! SHA-256 and MD5), and the credit platform's signed interface takes the
//! hub's requests and refuses a wrong secret, which stops the pipeline.

use crate::common::*;
use duijie_connectors::auth::{Ask, AuthConfig};
use std::time::Duration;

/// Python's reading of a signed request: it parses the URL itself, sorts
/// the parameters, lays out the text and takes the digest with OpenSSL's
/// algorithms; prints the signature it expects.
const PYTHON_SIGNED_QUERY: &str = r#"
import hashlib, hmac, json, sys
from urllib.parse import urlsplit, parse_qsl
c = json.loads(sys.argv[1]); url = sys.argv[2]
pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
get = dict(pairs)
query = "&".join(f"{k}={v}" for k, v in sorted((k, v) for k, v in pairs if k != "sign"))
text = (c.get("layout", "{query}&secret={secret}")
    .replace("{query}", query).replace("{secret}", c["secret"]).replace("{app_key}", c["app_key"])
    .replace("{timestamp}", get["timestamp"]).replace("{nonce}", get["nonce"])).encode()
d = c.get("digest", "sm3"); key = c["secret"].encode()
sig = {"sm3": lambda: hashlib.new("sm3", text).hexdigest(),
       "sha256": lambda: hashlib.sha256(text).hexdigest(),
       "md5": lambda: hashlib.md5(text).hexdigest(),
       "hmac-sm3": lambda: hmac.new(key, text, "sm3").hexdigest(),
       "hmac-sha256": lambda: hmac.new(key, text, "sha256").hexdigest()}[d]()
print(sig.upper() if c.get("case") == "upper" else sig)
"#;

/// The same for HMAC headers: the text from the method, path, sorted
/// query, the headers' timestamp and nonce, and the body's digest.
const PYTHON_HMAC_HEADERS: &str = r#"
import base64, hashlib, hmac, json, sys
from urllib.parse import urlsplit, parse_qsl
c = json.loads(sys.argv[1]); method, url, ts, nonce, body = sys.argv[2:7]
u = urlsplit(url)
query = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(u.query, keep_blank_values=True)))
h = "sha256" if c.get("hmac") == "hmac-sha256" else "sm3"
text = "\n".join([method, u.path, query, ts, nonce, hashlib.new(h, body.encode()).hexdigest()]).encode()
print(base64.b64encode(hmac.new(c["secret"].encode(), text, h).digest()).decode())
"#;

fn run_python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A request as the endpoint would send it, authorized by `config`.
fn authorized(config: &serde_json::Value, request: reqwest::RequestBuilder) -> reqwest::Request {
    let auth: AuthConfig = serde_json::from_value(config.clone()).unwrap();
    auth.validate().unwrap();
    let mut built = request.build().unwrap();
    let client = reqwest::Client::new();
    block_on(auth.build().authorize(
        &mut built,
        &Ask {
            client: &client,
            timeout: Duration::from_secs(1),
        },
    ))
    .unwrap();
    built
}

#[test]
fn signatures_are_what_independent_implementations_compute() {
    let client = reqwest::Client::new();
    // Values with spaces, Chinese, an encoded `&` and `=`.
    let url = "http://hotline.example/api/v2/orders?since=2026-12-01%2008%3A00%3A00&street=%E4%B8%9C%E5%B1%B1%E8%A1%97%E9%81%93&q=a%26b%3Dc&pageSize=50";
    for config in [
        serde_json::json!({"scheme": "signed_query", "app_key": "hub", "secret": "s3-Cret"}),
        serde_json::json!({"scheme": "signed_query", "app_key": "hub", "secret": "s3-Cret", "digest": "md5", "case": "upper", "layout": "{secret}{query}{secret}"}),
        serde_json::json!({"scheme": "signed_query", "app_key": "hub", "secret": "s3-Cret", "digest": "sha256", "timestamp": "s", "layout": "{app_key}{timestamp}{nonce}{query}{secret}"}),
        serde_json::json!({"scheme": "signed_query", "app_key": "hub", "secret": "s3-Cret", "digest": "hmac-sm3", "layout": "{query}"}),
        serde_json::json!({"scheme": "signed_query", "app_key": "hub", "secret": "s3-Cret", "digest": "hmac-sha256"}),
    ] {
        let request = authorized(&config, client.get(url));
        let sent = request
            .url()
            .query_pairs()
            .find(|(k, _)| k == "sign")
            .map(|(_, v)| v.into_owned())
            .expect("a signature");
        let expected = run_python(
            PYTHON_SIGNED_QUERY,
            &[&config.to_string(), request.url().as_str()],
        );
        assert_eq!(sent, expected, "{config}");
    }
    for config in [
        serde_json::json!({"scheme": "hmac_headers", "key_id": "hub", "secret": "k3y-Gw"}),
        serde_json::json!({"scheme": "hmac_headers", "key_id": "hub", "secret": "k3y-Gw", "hmac": "hmac-sha256"}),
    ] {
        let body = "<soap:Envelope>事件</soap:Envelope>";
        let request = authorized(&config, client.post(url).body(body));
        let h = |n: &str| request.headers()[n].to_str().unwrap().to_owned();
        assert_eq!(h("x-ca-key"), "hub");
        let expected = run_python(
            PYTHON_HMAC_HEADERS,
            &[
                &config.to_string(),
                "POST",
                request.url().as_str(),
                &h("x-ca-timestamp"),
                &h("x-ca-nonce"),
                body,
            ],
        );
        assert_eq!(h("x-ca-signature"), expected, "{config}");
    }
}

fn repairs_pipeline(name: &str, sandbox: &str, topic: &str, secret: &str) -> String {
    format!(
        r#"[pipelines.{name}]
system = "credit"
mapping = "credit_repair"
topic = "{topic}"
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "200ms", max_attempts = 0 }}

[pipelines.{name}.source]
kind = "http_poll"
url = "http://{sandbox}/credit/api/repairs"
auth = {{ scheme = "signed_query", app_key = "{app_key}", secret = "{secret}", digest = "sm3" }}
records_pointer = "/data/records"
paging = "keyset"
page_size = 1
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "xfbh"
after_id_param = "afterId"
"#,
        app_key = duijie_sandbox::credit::CREDIT_APP_KEY,
    )
}

#[test]
fn the_credit_platforms_signed_interface_takes_the_hubs_requests_and_refuses_a_wrong_secret() {
    let brokers = brokers();
    let sandbox = start_sandbox(duijie_sandbox::SandboxConfig {
        change_limit: Some(0),
        ..Default::default()
    });
    let addr = format!("127.0.0.1:{}", free_port());
    let (signed, forged) = (unique("canonical.repair"), unique("canonical.repair"));
    let d = TestDeployment::new(
        &brokers,
        &format!(
            "[http]\nlisten = \"{addr}\"\nstatus_token = \"{STATUS_TOKEN}\"\n\n{}\n{}",
            repairs_pipeline(
                "signed",
                &sandbox,
                &signed,
                duijie_sandbox::credit::CREDIT_API_SECRET
            ),
            repairs_pipeline("forged", &sandbox, &forged, "not-the-secret-of-the-hub"),
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    // Every repair the platform lists arrives, over pages of one: each
    // page's request signed afresh (a nonce is never taken twice).
    let listed = get_json(&format!("http://{sandbox}/credit/api/received"))["repairs"]
        .as_u64()
        .unwrap();
    assert!(listed >= 2, "the platform lists repairs across pages");
    wait_until(Duration::from_secs(60), "every repair on the bus", || {
        latest(&brokers, &signed).len() as u64 == listed
    });
    let mut report = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the forged pipeline failing",
        || {
            report = pipeline_report(&addr, "forged");
            report["state"] == "failing"
        },
    );
    assert!(
        report["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401") && e.contains("auth")),
        "{report}"
    );
    assert_eq!(pipeline_report(&addr, "signed")["state"], "running");
    let refused = get_json(&format!("http://{sandbox}/credit/api/received"))["signatures_refused"]
        .as_u64()
        .unwrap();
    assert!(refused >= 1, "the platform refused the forged signature");
    assert!(latest(&brokers, &forged).is_empty());
    terminate(hub);
}
