//! The live event feed, `GET /events/stream`, over real HTTP: events as they are appended, a
//! resume with `Last-Event-ID` that loses and repeats nothing, and a viewer that never reads.

use crate::helpers::{Layout, Shop};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a test waits for the next frame before it gives up.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// One SSE event.
#[derive(Debug, Clone)]
struct Frame {
    id: String,
    event: String,
    data: Value,
}

/// A feed connection read frame by frame.
struct Listener {
    response: reqwest::Response,
    buffer: String,
    frames: VecDeque<Frame>,
}

impl Listener {
    async fn open(shop: &Shop, query: &str, last_event_id: Option<&str>) -> Listener {
        let mut request = shop
            .http
            .get(shop.gateway(&format!("/events/stream{query}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("GET /events/stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Listener {
            response,
            buffer: String::new(),
            frames: VecDeque::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none comes within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .ok()?;
            let chunk = chunk.expect("the feed reads")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                if let (Some(id), Some(event), Some(data)) = (id, event, data) {
                    self.frames.push_back(Frame { id, event, data });
                }
            }
        }
    }

    async fn next(&mut self) -> Frame {
        self.next_within(FRAME_DEADLINE)
            .await
            .expect("an event within the deadline")
    }
}

async fn customer(shop: &Shop, name: &str) -> String {
    let ids = shop
        .create(
            "/customer",
            json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())}),
        )
        .await;
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_created_while_a_client_listens_arrives_with_its_entity() {
    let shop = Shop::start(Layout::OneProcess).await;
    let buyer = customer(&shop, "Ada").await;
    let product = shop
        .create("/product", json!({"name": "Tea", "price": 450}))
        .await;
    shop.create("/inventory", json!({"product_id": product[0], "amount": 5}))
        .await;

    let mut orders = Listener::open(&shop, "?type=order&action=created", None).await;
    let mut everything = Listener::open(&shop, "", None).await;
    let order = shop
        .create(
            "/order",
            json!({"product_ids": [product[0]], "customer_id": buyer}),
        )
        .await;
    let frame = orders.next().await;
    assert_eq!(frame.event, "order_created");
    assert_eq!(frame.data["entity"]["id"], order[0].as_str());
    assert_eq!(frame.data["entity"]["customer_id"], buyer.as_str());
    assert_eq!(frame.data["stream"], "events:order_created");
    assert_eq!(frame.data["version"], 1);
    assert_eq!(frame.data["id"], frame.id.as_str());
    assert!(frame.data["request_id"].is_string(), "{:?}", frame.data);
    // Unfiltered: the order and the stock it took, in ID order.
    let first = everything.next().await;
    let second = everything.next().await;
    assert_eq!(
        (first.event.as_str(), second.event.as_str()),
        ("order_created", "inventory_updated")
    );
    assert_eq!(first.id, frame.id);
    // The filter holds: no stock event on the orders-only feed.
    assert!(orders
        .next_within(Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_feed_gets_exactly_the_events_appended_while_it_was_away() {
    let shop = Shop::start(Layout::OneProcess).await;
    let mut feed = Listener::open(&shop, "?type=customer", None).await;
    let ada = customer(&shop, "Ada").await;
    let seen = feed.next().await;
    assert_eq!(seen.data["entity"]["id"], ada.as_str());
    drop(feed);

    // While the client is away.
    let mut away = Vec::new();
    for name in ["Bob", "Cy", "Dee"] {
        away.push(customer(&shop, name).await);
    }
    let mut feed = Listener::open(&shop, "?type=customer", Some(&seen.id)).await;
    let mut got = Vec::new();
    let mut last = seen.id.clone();
    for _ in 0..away.len() {
        let frame = feed.next().await;
        got.push(
            frame.data["entity"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        last = frame.id;
    }
    assert_eq!(got, away, "the events appended meanwhile, in order");
    // Then live, without repeating any.
    let eve = customer(&shop, "Eve").await;
    let next = feed.next().await;
    assert_eq!(next.data["entity"]["id"], eve.as_str());
    assert!(next.id > last);

    // `?since=` resumes the same way.
    let mut since = Listener::open(&shop, &format!("?type=customer&since={}", seen.id), None).await;
    let first = since.next().await;
    assert_eq!(first.data["entity"]["id"], away[0].as_str());

    // Bad input is a 400 that names it.
    for query in ["?type=planet", "?since=yesterday", "?entity=nope"] {
        let response = shop
            .http
            .get(shop.gateway(&format!("/events/stream{query}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 400, "{query}");
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_does_not_grow_the_gateway_without_bound() {
    use tokio::io::AsyncWriteExt;
    let shop = Shop::start(Layout::ProcessPerRole).await;
    let pid = shop.pid("gateway").expect("the gateway runs as a process");
    // A viewer that sends its request and never reads a byte.
    let address = shop.url("gateway").trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /events/stream HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .expect("send the request");
    // A viewer of products only beside it: the product created after the burst reaches it
    // once the feed has carried everything before.
    let mut live = Listener::open(&shop, "?type=product", None).await;
    let before = rss_kib(pid);

    // 50,000 events: twelve times the feed's ring. Were they queued for the stuck viewer (about
    // half a KiB each in memory), the gateway would grow by ~25 MiB.
    for batch in 0..50 {
        let people: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("P{batch}x{i}"), "email": format!("p{batch}x{i}@example.com")}))
            .collect();
        shop.create("/customers", Value::Array(people)).await;
    }
    let marker = shop
        .create("/product", json!({"name": "Marker", "price": 1}))
        .await;
    let frame = live
        .next_within(Duration::from_secs(120))
        .await
        .expect("the product after the burst reaches the live viewer");
    assert_eq!(frame.data["entity"]["id"], marker[0].as_str());
    let after = rss_kib(pid);
    eprintln!("gateway RSS with a stuck viewer: {before} KiB before, {after} KiB after");
    // The stuck viewer holds at most the shared ring (4,096 events) and its socket's buffers:
    // a bound, not a measurement.
    assert!(
        after < before + 16 * 1024,
        "the gateway grew from {before} KiB to {after} KiB with a viewer that never reads"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_token_the_feed_needs_it() {
    const TOKEN: &str = "feed-token-7d2c-9a41-e5";
    let shop = Shop::start_with(Layout::OneProcess, &[("ORDERSHOP_API_TOKEN", TOKEN)]).await;
    let without = shop
        .http
        .get(shop.gateway("/events/stream"))
        .send()
        .await
        .expect("GET");
    assert_eq!(without.status(), 401);
    let with = shop
        .http
        .get(shop.gateway("/events/stream"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(with.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_n_starts_with_the_most_recent_events_then_goes_live() {
    let shop = Shop::start(Layout::OneProcess).await;
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("Last{i}");
        customer(&shop, &name).await;
        names.push(name);
    }
    shop.create("/product", json!({"name": "Tea", "price": 450}))
        .await;
    // The last 3 customer events: the 3 newest customers, oldest first; the product is not one.
    let mut viewer = Listener::open(&shop, "?type=customer&last=3", None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(viewer.next().await.data["entity"]["name"].clone());
    }
    assert_eq!(seen, [json!("Last2"), json!("Last3"), json!("Last4")]);
    // Then live, with nothing repeated in between.
    customer(&shop, "Live").await;
    assert_eq!(viewer.next().await.data["entity"]["name"], "Live");
    // More than there are: all of them.
    let mut all = Listener::open(&shop, "?type=customer&last=1000", None).await;
    assert_eq!(all.next().await.data["entity"]["name"], "Last0");
    for bad in ["0", "1001", "many"] {
        let response = shop
            .http
            .get(shop.gateway(&format!("/events/stream?last={bad}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 400, "last={bad}");
    }
}
