//! Harness: a TCP server that accepts connections and never says a word, the way a
//! hung server, a wrong port behind a load balancer or a firewall black hole behaves.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Listens on 127.0.0.1:`port`, holds every connection open without writing; stops
/// (closing the held connections) on drop. Plain std threads: tests need no runtime.
#[derive(Debug)]
pub struct Tarpit {
    pub port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Tarpit {
    pub fn start() -> Tarpit {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tarpit");
        let port = listener.local_addr().expect("tarpit address").port();
        // Non-blocking so the accept loop notices `stop` without a wake-up connection.
        listener.set_nonblocking(true).expect("non-blocking tarpit");
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, held) = (stop.clone(), held.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => held.lock().unwrap_or_else(|e| e.into_inner()).push(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Tarpit { port, stop, held, thread: Some(thread) }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
