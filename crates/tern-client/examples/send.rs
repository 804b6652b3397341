//! Sends one text message and prints where it was stored.
//!
//! ```sh
//! cargo run -p tern-client --example send -- http://127.0.0.1:8080 alice password1 bob "hello"
//! ```
//!
//! Over HTTP (`POST /v1/messages`): no session needed. A 429 is retried
//! after its `Retry-After` with the same `client_msg_id`, so the message is
//! stored once.

use tern_client::{Client, OutMessage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, user, password, to, text] = args.as_slice() else {
        eprintln!("usage: send URL USER PASSWORD TO TEXT");
        std::process::exit(2);
    };
    let me = Client::new(url)?.login(user, password).await?;
    let sent = me.send_http(OutMessage::text_to(to, text)).await?;
    println!("{} seq {} msg_id {}", sent.conv, sent.seq, sent.msg_id);
    Ok(())
}
