//! PostgreSQL `LISTEN` as a broadcast channel inside the process: every replica of a service
//! hears what any replica `NOTIFY`s in a committed transaction. Analytics uses it to wake
//! long-polls the moment a view changes, instead of polling the database.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// Notification payloads of one channel.
#[derive(Debug, Clone)]
pub struct Listener {
    sender: broadcast::Sender<String>,
}

impl Listener {
    /// Listens on `channel` of `database_url` until `shutdown`, reconnecting after errors.
    /// A waiter that subscribes, then checks the database, then waits, misses nothing.
    pub fn spawn(
        database_url: &str,
        channel: &'static str,
        shutdown: CancellationToken,
    ) -> Listener {
        let (sender, _) = broadcast::channel(4096);
        let listener = Listener {
            sender: sender.clone(),
        };
        let url = database_url.to_string();
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(error) = listen(&url, channel, &sender, &shutdown).await {
                    tracing::warn!(channel, %error, "LISTEN connection lost; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        });
        listener
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }
}

async fn listen(
    url: &str,
    channel: &str,
    sender: &broadcast::Sender<String>,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let config: tokio_postgres::Config = url.parse()?;
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The LISTEN is sent through the client while the connection is driven below.
    let statement = format!("LISTEN {channel}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            done = &mut listen, if !listening => {
                done?;
                listening = true;
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    // No receiver is fine: nobody is waiting.
                    let _ = sender.send(notification.payload().to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    }
}
