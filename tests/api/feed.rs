//! The live event feed, `GET /events/stream`, over real HTTP: events as they are appended, a
//! resume with `Last-Event-ID` that loses and repeats nothing, and a viewer that never reads.

use crate::helpers::{Layout, Shop};
use ordershop_domain::{Action, EntityKind};
use ordershop_eventstore::{EntryId, Stream};
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
async fn a_viewer_that_never_reads_does_not_grow_the_gateway_and_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shop = Shop::start_with(
        Layout::ProcessPerRole,
        &[("ORDERSHOP_FEED_STALL_MS", "1000")],
    )
    .await;
    let pid = shop.pid("gateway").expect("the gateway runs as a process");
    // A viewer that sends its request and never reads a byte.
    let address = shop.url("gateway").trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
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
    // It left frames untaken for longer than the stall bound: the gateway closed it. What was
    // already in flight can still be read, then the connection ends.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sink = vec![0u8; 1 << 16];
        loop {
            match stuck.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled viewer was not disconnected");
    assert!(
        shop.log("gateway")
            .contains("closing an event-feed viewer that does not read"),
        "the gateway says why it closed the viewer"
    );
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

/// Reads `viewer` until the event with `until` as its entry ID, and returns every frame's
/// `(id, event)` on the way, that one included.
async fn read_until(viewer: &mut Listener, until: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let frame = viewer
            .next_within(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("the feed stopped after {} events", seen.len()));
        let done = frame.id == until;
        seen.push((frame.id, frame.event));
        if done {
            return seen;
        }
    }
}

/// The merged log after `after` up to `until` (inclusive), as `(id, <type>_<action>)`.
async fn log_between(shop: &Shop, after: EntryId, until: &str) -> Vec<(String, String)> {
    let until: EntryId = until.parse().expect("an entry id");
    let store = shop.store().await;
    let entries = store
        .replay(Stream::all(), after)
        .await
        .expect("replay")
        .collect_all()
        .await
        .expect("read the log");
    entries
        .into_iter()
        .filter(|e| e.id <= until)
        .map(|e| {
            (
                e.id.to_string(),
                format!("{}_{}", e.stream.kind, e.stream.action),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_gets_exactly_the_merged_log_under_bursts_and_many_writers() {
    let shop = Shop::start(Layout::OneProcess).await;
    let buyer = customer(&shop, "Ada").await;
    let mut products = Vec::new();
    for i in 0..5 {
        let id = shop
            .create("/product", json!({"name": format!("P{i}"), "price": 100}))
            .await;
        shop.create(
            "/inventory",
            json!({"product_id": id[0], "amount": 1_000_000}),
        )
        .await;
        products.push(id[0].clone());
    }
    let start = shop.store().await.last_issued().await.expect("the clock");
    // Two viewers: one live from now, one resuming from the same point (replay, then live).
    let mut live = Listener::open(&shop, "", None).await;
    let mut resumed = Listener::open(&shop, &format!("?since={start}"), None).await;

    // One POST of 1,000 orders: 2,000 events of two streams, group-committed.
    let orders: Vec<Value> = (0..1000)
        .map(|i| json!({"product_ids": [products[i % products.len()]], "customer_id": buyer}))
        .collect();
    shop.create("/orders", Value::Array(orders)).await;
    // Six parallel 1,000-customer POSTs, and 32 writers placing orders one at a time.
    let mut writers = Vec::new();
    for batch in 0..6 {
        let http = shop.http.clone();
        let url = shop.gateway("/customers");
        writers.push(tokio::spawn(async move {
            let people: Vec<Value> = (0..1000)
                .map(|i| json!({"name": format!("W{batch}x{i}"), "email": format!("w{batch}x{i}@example.com")}))
                .collect();
            let response = http.post(url).json(&people).send().await.expect("POST");
            assert_eq!(response.status(), 200);
        }));
    }
    for writer in 0..32 {
        let http = shop.http.clone();
        let url = shop.gateway("/order");
        let body =
            json!({"product_ids": [products[writer % products.len()]], "customer_id": buyer});
        writers.push(tokio::spawn(async move {
            for _ in 0..25 {
                let response = http.post(&url).json(&body).send().await.expect("POST");
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    // A last event after everything: where the comparison ends.
    let marker = shop
        .create("/product", json!({"name": "Marker", "price": 1}))
        .await;
    let marker_id = {
        let store = shop.store().await;
        let entries = store
            .replay(
                vec![Stream::new(EntityKind::Product, Action::Created)],
                start,
            )
            .await
            .expect("replay")
            .collect_all()
            .await
            .expect("read");
        entries
            .iter()
            .rev()
            .find(|e| e.mentions(&marker[0]))
            .expect("the marker is in the log")
            .id
            .to_string()
    };
    let log = log_between(&shop, start, &marker_id).await;
    assert_eq!(log.len(), 2_000 + 6_000 + 32 * 25 * 2 + 1);
    for (name, viewer) in [("live", &mut live), ("resumed", &mut resumed)] {
        let seen = read_until(viewer, &marker_id).await;
        assert_eq!(
            seen.len(),
            log.len(),
            "{name}: as many events as the log holds"
        );
        assert!(
            seen == log,
            "{name}: the viewer's events differ from the log's"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_have_a_budget_of_their_own_and_commands_still_get_through() {
    let shop = Shop::start_with(
        Layout::OneProcess,
        &[
            ("ORDERSHOP_FEED_MAX_VIEWERS", "3"),
            ("ORDERSHOP_FEED_MAX_PER_CLIENT", "2"),
        ],
    )
    .await;
    let from = |address: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(address))
            .build()
            .expect("a client")
    };
    let open = |client: reqwest::Client| {
        let url = shop.gateway("/events/stream");
        async move { client.get(url).send().await.expect("GET /events/stream") }
    };
    let first = open(shop.http.clone()).await;
    let second = open(shop.http.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    // A third from the same client: over the per-client cap.
    let refused = open(shop.http.clone()).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = refused.json().await.expect("a JSON error");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("this client"),
        "{body}"
    );
    // Another client gets the last place; a fourth viewer in all is refused.
    let third = open(from([127, 0, 0, 2])).await;
    assert_eq!(third.status(), 200);
    let full = open(from([127, 0, 0, 3])).await;
    assert_eq!(full.status(), 503);
    let body: Value = full.json().await.expect("a JSON error");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("3 viewers"),
        "{body}"
    );
    // Commands and queries are not viewers.
    let ada = customer(&shop, "Ada").await;
    let (status, got) = shop.get(&format!("/customer/{ada}")).await;
    assert_eq!((status, got["name"].as_str()), (200, Some("Ada")));

    // A viewer that leaves gives its place back, even while nothing happens in the shop that
    // would be written to it (the watchdog sees the closed connection).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open(from([127, 0, 0, 3])).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the departed viewer's place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
