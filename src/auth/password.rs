//! Argon2id password hashes, computed on a small, bounded pool of dedicated threads.
//!
//! One hash with the default parameters fills about 19 MiB. Run on tokio's blocking pool,
//! a flood of logins ran hundreds of hashes at once (hundreds of threads, gigabytes), and
//! glibc kept the memory afterwards: freed 19 MiB chunks stay in each thread's malloc
//! arena. So hashing is bounded twice:
//! - at most `workers` hashes run at once (one per core by default), each worker reusing
//!   one Argon2 memory buffer for every hash it computes, so the memory is a fixed
//!   `workers × 19 MiB`, allocated once and never given back nor grown by load;
//! - at most `queue` requests wait; beyond that [`PasswordError::Busy`] at once (the API
//!   answers 503 with `Retry-After`), instead of an unbounded backlog.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every worker is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A job for a worker; it gets the worker's reusable Argon2 memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The bounded hashing pool kept in `AppState`. Cheap to clone; the worker threads end
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Passwords {
    jobs: SyncSender<Job>,
    workers: usize,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords({} workers)", self.workers)
    }
}

impl Passwords {
    /// `workers` hashing threads (0: one per core) and room for `queue` waiting requests.
    pub fn new(workers: usize, queue: usize) -> Passwords {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        let (jobs, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("ehrs-argon2-{n}"))
                .spawn(move || work(&receiver))
                .expect("a password hashing thread starts");
        }
        Passwords { jobs, workers }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A new PHC hash of `password` (Argon2id, default parameters, random salt).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |memory| hash_with(memory, &password)).await?
    }

    /// True when `password` matches the stored PHC hash.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, PasswordError> {
        self.run(move |memory| verify_with(memory, &password, &hash))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(job(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PasswordError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(anyhow::anyhow!("the password hashing pool has stopped").into());
            }
        }
        result
            .await
            .map_err(|_| anyhow::anyhow!("a password hash failed unexpectedly").into())
    }
}

/// A worker: takes jobs until every sender is gone. A panicking job loses its answer
/// (the caller sees an error), not the worker.
fn work(receiver: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::default();
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
    }
}

/// Argon2 working memory, kept by one worker and reused for every hash (Argon2 overwrites
/// every block on its first pass, so nothing leaks from one hash into the next).
#[derive(Default)]
pub struct Memory(Vec<Block>);

impl Memory {
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.0.len() < needed {
            self.0.resize(needed, Block::new());
        }
        &mut self.0[..needed]
    }
}

fn hash_with(memory: &mut Memory, password: &str) -> Result<String, PasswordError> {
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::new(&rand::random::<[u8; Salt::RECOMMENDED_LENGTH]>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            memory.blocks(&params),
        )
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// What `argon2`'s own verifier does, with the worker's memory instead of a fresh
/// allocation; the comparison of outputs is constant-time (`Output`'s `PartialEq`).
fn verify_with(memory: &mut Memory, password: &str, hash: &str) -> bool {
    let mut check = || -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let (salt, expected) = (parsed.salt.as_ref()?, parsed.hash.as_ref()?);
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                memory.blocks(&params),
            )
            .ok()?;
        Some(Output::new(&out).ok()? == *expected)
    };
    check().unwrap_or(false)
}

/// One hash outside the pool, for the command line and start-up (one at a time, not on
/// a request path).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        hash_with(&mut Memory::default(), &password).map_err(|e| anyhow::anyhow!(e))
    })
    .await?
}

/// Checks `password` against `hash` off the async threads, outside the bounded pool: for
/// the command line and start-up, which have no pool.
pub async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_with(&mut Memory::default(), &password, &hash))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_interoperate_with_the_argon2_crate_and_reused_memory_changes_nothing() {
        let mut memory = Memory::default();
        let ours = hash_with(&mut memory, "correct-horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        Argon2::default()
            .verify_password(b"correct-horse", &parsed)
            .expect("argon2 accepts our hash");
        let theirs = Argon2::default()
            .hash_password(b"battery-staple")
            .unwrap()
            .to_string();
        // The same (dirty) memory verifies again and again, right and wrong alike.
        for _ in 0..2 {
            assert!(verify_with(&mut memory, "battery-staple", &theirs));
            assert!(!verify_with(&mut memory, "battery-stapl", &theirs));
            assert!(verify_with(&mut memory, "correct-horse", &ours));
        }
        assert!(!verify_with(&mut memory, "x", "not a phc string"));
        assert_eq!(memory.0.len(), Params::default().block_count());
    }

    #[tokio::test]
    async fn beyond_the_queue_the_pool_answers_busy_at_once() {
        let pool = Passwords::new(1, 1);
        let hash = pool.hash("some-password".into()).await.unwrap();
        // One running, one queued, the rest refused without waiting.
        let attempts = (0..6).map(|_| pool.verify("wrong".into(), hash.clone()));
        let outcomes = futures_util::future::join_all(attempts).await;
        let busy = outcomes
            .iter()
            .filter(|o| matches!(o, Err(PasswordError::Busy)))
            .count();
        let done = outcomes.iter().filter(|o| matches!(o, Ok(false))).count();
        assert!(busy >= 1 && done >= 1 && busy + done == 6, "{outcomes:?}");
        assert!(pool.verify("some-password".into(), hash).await.unwrap());
    }
}
