//! `ehrs demo`: one command that shows the whole product. It starts an embedded server on a
//! free port over a throw-away SQLite database, and a local receiver that checks every
//! webhook's Standard Webhooks signature; subscribes the receiver through the API; walks one
//! patient through a camp day with plain HTTP calls, as an integrator would; and prints each
//! webhook as it arrives (type, sequence, signature verified, latency after the API call
//! returned). It ends with the same walk as `curl` commands.
//!
//! Everything it creates lives in a temporary directory, removed at the end. Any failed
//! step stops the demo with a non-zero exit and the server's answer.

mod receiver;
mod steps;

use crate::application::Application;
use crate::config::Settings;
use crate::outbound::signing;
use anyhow::{Context, bail};
use receiver::{Deliveries, start_receiver};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use steps::{Step, fill, fill_json, print_curl, steps};

/// How long one step may wait for its webhooks.
const WEBHOOK_PATIENCE: Duration = Duration::from_secs(15);

/// Runs the demo; an `Err` (any failed step) makes `ehrs demo` exit non-zero.
pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ehrs-demo-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).context("cannot create the demo's temporary directory")?;
    let result = run_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path) -> anyhow::Result<()> {
    let password = hex::encode(rand::random::<[u8; 16]>());
    let mut settings = Settings::defaults();
    settings.data_dir = dir.to_path_buf();
    settings.database_url = Some(format!("sqlite://{}", dir.join("ehrs.db").display()));
    settings.admin_password = Some(password.clone());
    settings.jwt_secret = None;
    settings.secret_key = None;
    settings.webhook_backend = "embedded".into();
    settings.webhook_workers = true;
    settings.webhooks_allow_insecure = true; // the receiver is http://127.0.0.1
    let app = Application::build(settings).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    println!(
        "EHRS demo: server on {base} (data in {}, removed at the end)",
        dir.display()
    );

    let result = walk(&base, &password).await;

    let _ = stop.send(());
    if let Ok(Err(err)) = server.await {
        tracing::warn!(error = %err, "the demo server did not stop cleanly");
    }
    result
}

async fn walk(base: &str, password: &str) -> anyhow::Result<()> {
    let (receiver_url, secret, mut deliveries) = start_receiver().await?;
    let mut api = Api {
        client: reqwest::Client::builder().no_proxy().build()?,
        base: base.to_string(),
        token: String::new(),
    };
    let login = json!({"username": "admin", "password": password});
    let login = api
        .call(Method::POST, "/api/v1/auth/login", &login)
        .await
        .context("log in as admin")?;
    api.token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let subscription = json!({"url": receiver_url, "event_types": [], "payload": "full", "description": "ehrs demo"});
    let subscription = api
        .call(
            Method::POST,
            "/api/v1/webhooks/subscriptions",
            &subscription,
        )
        .await
        .context("create the webhook subscription")?;
    let key = subscription["secret"]
        .as_str()
        .and_then(signing::secret_key)
        .context("the subscription has no whsec_ secret")?;
    let _ = secret.set(key);
    println!(
        "Receiver on {receiver_url}, subscribed as {}\n",
        subscription["id"].as_str().unwrap_or("?")
    );

    let mut saved: HashMap<String, String> = HashMap::new();
    let mut tally = Tally::default();
    for (index, step) in steps().iter().enumerate() {
        let label = format!("step {} ({})", index + 1, step.title);
        let returned = take_step(&api, step, index + 1, &mut saved)
            .await
            .with_context(|| format!("{label} failed"))?;
        await_webhooks(&mut deliveries, step.expect, returned, &mut tally)
            .await
            .with_context(|| format!("{label} failed"))?;
    }
    println!(
        "\n{} webhooks received, {} with a verified signature.",
        tally.received,
        tally.received - tally.unverified
    );
    print_curl(&steps());
    if tally.unverified > 0 {
        bail!(
            "{} webhooks failed signature verification",
            tally.unverified
        );
    }
    Ok(())
}

/// Sends one step's call and keeps the ids later steps need; returns when the answer came.
async fn take_step(
    api: &Api,
    step: &Step,
    number: usize,
    saved: &mut HashMap<String, String>,
) -> anyhow::Result<Instant> {
    let value = |name: &str| saved.get(name).cloned().unwrap_or_default();
    let path = fill(step.path, &value);
    let body = fill_json(&step.body, &value);
    println!("{number:>2}. {} — {} {path}", step.title, step.method);
    let answer = api.call(step.method.clone(), &path, &body).await?;
    let returned = Instant::now();
    for (name, field) in step.save {
        let found = answer
            .pointer(&field.replace('.', "/"))
            .and_then(Value::as_str)
            .with_context(|| format!("the answer has no {field}: {answer}"))?;
        saved.insert(name.to_string(), found.to_string());
    }
    Ok(returned)
}

#[derive(Default)]
struct Tally {
    received: usize,
    unverified: usize,
}

/// Prints webhooks as they arrive until every `expected` type came (or the patience ran out).
async fn await_webhooks(
    deliveries: &mut Deliveries,
    expected: &[&str],
    returned: Instant,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut waiting = expected.to_vec();
    let deadline = returned + WEBHOOK_PATIENCE;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(delivery)) = tokio::time::timeout(left, deliveries.recv()).await else {
            bail!(
                "no {} webhook within {WEBHOOK_PATIENCE:?}",
                waiting.join(", ")
            );
        };
        waiting.retain(|t| *t != delivery.event_type);
        tally.received += 1;
        tally.unverified += usize::from(!delivery.verified);
        // The engine is woken at commit, so a webhook may beat the HTTP answer.
        let latency = delivery.at.checked_duration_since(returned).map_or_else(
            || "before the API call returned".to_string(),
            |d| {
                format!(
                    "{:.1} ms after the API call returned",
                    d.as_secs_f64() * 1000.0
                )
            },
        );
        println!(
            "      ← {:<24} sequence {:<3} signature verified: {:<3} {latency}",
            delivery.event_type,
            delivery.sequence,
            if delivery.verified { "yes" } else { "NO" }
        );
    }
    Ok(())
}

/// The API as an integrator sees it: JSON over HTTP with the bearer token.
struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .json(body);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}: no answer"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
