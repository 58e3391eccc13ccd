//! Inference for the server: one thread owns the model; requests queue their prepared images,
//! and each forward pass takes every image waiting (up to the batch size), so concurrent
//! requests share passes and throughput under load approaches the offline rate, while a lone
//! request waits for nobody.

use std::sync::mpsc;
use std::thread::JoinHandle;

use burn::tensor::{Tensor, TensorData};
use tokio::sync::oneshot;

use crate::embed::model_device;
use crate::run::trained::Trained;

/// One image's embedding, or why it failed.
type Reply = Result<Vec<f32>, String>;

struct Job {
    input: Vec<f32>,
    reply: oneshot::Sender<Reply>,
}

/// The inference thread and its queue.
pub struct Embedder {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    shape: [usize; 3],
}

impl Embedder {
    /// Starts the thread with the model; `batch` images at most per pass.
    pub fn start(trained: Trained, batch: usize) -> Self {
        let t = &trained.transform;
        let shape = [t.channels, t.size[0], t.size[1]];
        let (queue, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("triplet-embedder".into())
            .spawn(move || run(&trained, &jobs, batch.max(1), shape))
            .expect("starting the inference thread");
        Self {
            queue: Some(queue),
            thread: Some(thread),
            shape,
        }
    }

    /// Values per prepared image (`channels × height × width`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Embeds one prepared image (`image_len` values), waiting for its pass.
    pub async fn embed(&self, input: Vec<f32>) -> Reply {
        assert_eq!(input.len(), self.image_len(), "a prepared image");
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or("the server is stopping")?;
        queue
            .send(Job { input, reply })
            .map_err(|_| "the inference thread has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the inference thread has stopped".to_string())?
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered what was queued.
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(trained: &Trained, jobs: &mpsc::Receiver<Job>, batch: usize, shape: [usize; 3]) {
    let device = model_device(&trained.model);
    while let Ok(first) = jobs.recv() {
        let mut pass = vec![first];
        while pass.len() < batch {
            match jobs.try_recv() {
                Ok(job) => pass.push(job),
                Err(_) => break,
            }
        }
        let n = pass.len();
        let mut data = Vec::with_capacity(n * shape.iter().product::<usize>());
        for job in &pass {
            data.extend_from_slice(&job.input);
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(data, [n, shape[0], shape[1], shape[2]]),
            &device,
        );
        let out = trained
            .model
            .forward(x)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| format!("reading embeddings back from the device: {e:?}"));
        match out {
            Ok(values) => {
                let dim = values.len() / n;
                for (job, row) in pass.into_iter().zip(values.chunks_exact(dim)) {
                    let reply = if row.iter().all(|v| v.is_finite()) {
                        Ok(row.to_vec())
                    } else {
                        Err("the model produced a non-finite embedding for this image".into())
                    };
                    let _ = job.reply.send(reply);
                }
            }
            Err(e) => {
                for job in pass {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
