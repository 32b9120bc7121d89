//! A timely worker in a thread of its own, for the objects whose stages hold state that is not
//! `Send` (a model backend, a dataflow's input handle): the Python object keeps a channel to it,
//! hands it jobs and waits for each answer with the GIL released.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use pyo3::prelude::*;
use timely::worker::Worker;

use crate::errors::{Kind, to_py};

/// A job and where its answer goes.
pub struct Job<J, R> {
    pub input: J,
    pub reply: Sender<anyhow::Result<R>>,
}

/// The Python object's end of the worker thread.
pub struct WorkerThread<J, R> {
    /// `None` once closed: the thread then ends and drops its state.
    jobs: Mutex<Option<Sender<Job<J, R>>>>,
}

impl<J: Send + 'static, R: Send + 'static> WorkerThread<J, R> {
    /// Starts the thread: `start` builds its state on the worker (loading models, building a
    /// dataflow), and its error is raised here as `kind`; then `serve` answers each job.
    pub fn spawn<S: 'static>(
        py: Python<'_>,
        name: &str,
        kind: Kind,
        start: impl FnOnce(&mut Worker) -> anyhow::Result<S> + Send + Sync + 'static,
        serve: impl Fn(&mut Worker, &mut S, J) -> anyhow::Result<R> + Send + Sync + 'static,
    ) -> PyResult<Self> {
        let (jobs, inbox) = channel::<Job<J, R>>();
        let (ready, started) = channel::<anyhow::Result<()>>();
        let inbox = Mutex::new(inbox);
        let ready = Mutex::new(ready);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                timely::execute_directly(move |worker| {
                    let ready = ready.lock().unwrap_or_else(|e| e.into_inner());
                    let mut state = match start(worker) {
                        Ok(s) => s,
                        Err(e) => return drop(ready.send(Err(e))),
                    };
                    let _ = ready.send(Ok(()));
                    let inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
                    while let Ok(job) = inbox.recv() {
                        let _ = job.reply.send(serve(worker, &mut state, job.input));
                    }
                })
            })
            .map_err(|e| to_py(e.into(), Kind::Other))?;
        let outcome = py.detach(move || started.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("{name} died"))));
        outcome.map_err(|e| to_py(e, kind))?;
        Ok(WorkerThread { jobs: Mutex::new(Some(jobs)) })
    }

    /// Runs `input` on the thread; its error is raised as `kind`.
    pub fn call(&self, py: Python<'_>, input: J, kind: Kind) -> PyResult<R> {
        let sender = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let closed = || to_py(anyhow::anyhow!("this object is closed"), Kind::Other);
        let sender = sender.ok_or_else(closed)?;
        let (reply, answer) = channel();
        sender.send(Job { input, reply }).map_err(|_| closed())?;
        let outcome =
            py.detach(move || answer.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("the worker thread died"))));
        outcome.map_err(|e| to_py(e, kind))
    }

    /// Ends the thread (its state is dropped): later calls raise.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
