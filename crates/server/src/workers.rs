//! A fixed pool of inference threads, each with its own copy of every model and a one-thread
//! rayon pool, fed through a bounded queue. Inference never runs on the async executor, the
//! number of images in flight is bounded, and a full queue is refused at once (HTTP 503).

use digits_model::Model;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

pub type Models = BTreeMap<String, Model>;
type Job = Box<dyn FnOnce(&mut Models) + Send>;

#[derive(Clone)]
pub struct Workers {
    queue: SyncSender<Job>,
}

/// The queue was full: the server is overloaded.
#[derive(Debug)]
pub struct Busy;

impl Workers {
    pub fn start(models: &Models, threads: usize, queue: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let mut own = models.clone();
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .expect("one-thread pool");
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                // A panic fails that one request (its reply channel drops), never the thread.
                                let run =
                                    std::panic::AssertUnwindSafe(|| pool.install(|| job(&mut own)));
                                if std::panic::catch_unwind(run).is_err() {
                                    tracing::error!("an inference job panicked");
                                }
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn inference thread");
        }
        Workers { queue: tx }
    }

    /// Runs `f` on an inference thread and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Models) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |m| {
            let _ = tx.send(f(m));
        });
        match self.queue.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Busy),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}
