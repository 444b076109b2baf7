//! A TCP proxy in front of PostgreSQL that a test can take down and bring
//! back: down, it cuts every open connection and refuses new ones, as a
//! database outage (or a network partition) would.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a local port to `target` (host:port).
    pub fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let target = target.to_owned();
        {
            let (up, open) = (Arc::clone(&up), Arc::clone(&open));
            thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    if !up.load(Ordering::Acquire) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    if let Ok(mut list) = open.lock() {
                        list.extend(client.try_clone().ok());
                        list.extend(server.try_clone().ok());
                    }
                    pipe(&client, &server);
                    pipe(&server, &client);
                }
            });
        }
        Proxy { addr, up, open }
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::Release);
        if let Ok(mut list) = self.open.lock() {
            for stream in list.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.up.store(true, Ordering::Release);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _: io::Result<u64> = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
