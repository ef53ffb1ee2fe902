//! A fixed pool of inference threads, each with its own copy of the models it has used and a
//! one-thread rayon pool, fed through a bounded queue. Inference never runs on the async
//! executor, the number of images in flight is bounded, and a full queue is refused at once
//! (HTTP 503).

use crate::catalogue::Served;
use digits_model::Model;
use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce(&mut Cache) + Send>;

/// A thread's own copies of models (inference needs scratch space, so each thread has its
/// own), by name, each with the version it copies.
#[derive(Default)]
pub struct Cache {
    models: HashMap<String, (u64, Model)>,
}

impl Cache {
    /// This thread's copy of `served`, made on first use of that version.
    pub fn model(&mut self, name: &str, served: &Served) -> &mut Model {
        let entry = self
            .models
            .entry(name.to_string())
            .or_insert_with(|| (served.id, (*served.model).clone()));
        if entry.0 != served.id {
            *entry = (served.id, (*served.model).clone());
        }
        &mut entry.1
    }
}

#[derive(Clone)]
pub struct Workers {
    queue: SyncSender<Job>,
}

/// The queue was full: the server is overloaded.
#[derive(Debug)]
pub struct Busy;

impl Workers {
    pub fn start(threads: usize, queue: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let mut own = Cache::default();
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
        f: impl FnOnce(&mut Cache) -> T + Send + 'static,
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
