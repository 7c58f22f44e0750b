//! A small three-tier application, used to make real strace captures for
//! the importer's golden tests (see `tests/data/strace/capture.sh`).
//!
//! `tiers [--v6] [CLIENTS] [REQUESTS]` starts three processes (itself again,
//! with a role argument):
//! - `backend N`: accepts N connections, one thread per connection; answers
//!   each line `Q <key>\n` with `R <key>:<len>\n`, peeking (MSG_PEEK) at each
//!   request before reading it.
//! - `middle BACKEND_PORT N`: accepts N connections, one thread per
//!   connection; each thread opens one keep-alive connection to the backend
//!   and, for each request line `GET <path>\n`, asks the backend twice and
//!   replies `OK <a> <b>\n` with one writev.
//! - `client MIDDLE_PORT CLIENTS REQUESTS`: CLIENTS threads, each with one
//!   connection sending REQUESTS requests, each written in three pieces.
//!
//! Everything listens on loopback (127.0.0.1 or ::1) with an ephemeral port,
//! and every process exits by itself; sockets time out after 5 s and the
//! driver kills what is left after 20 s.

use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tiers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: tiers [--v6] [CLIENTS] [REQUESTS]",
    )
}

fn num(s: Option<&String>, default: usize) -> io::Result<usize> {
    match s {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| usage()),
    }
}

fn run() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let v6 = std::env::var_os("TIERS_V6").is_some();
    let ip: IpAddr = if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    };
    match args.first().map(String::as_str) {
        Some("backend") => backend(ip, num(args.get(1), 1)?),
        Some("middle") => middle(ip, num(args.get(1), 0)? as u16, num(args.get(2), 1)?),
        Some("client") => client(
            ip,
            num(args.get(1), 0)? as u16,
            num(args.get(2), 1)?,
            num(args.get(3), 1)?,
        ),
        _ => {
            let mut rest = &args[..];
            let mut v6 = false;
            if rest.first().map(String::as_str) == Some("--v6") {
                v6 = true;
                rest = &rest[1..];
            }
            let clients = num(rest.first(), 3)?;
            let requests = num(rest.get(1), 2)?;
            drive(v6, clients, requests)
        }
    }
}

/// Starts the three tiers and waits for them.
fn drive(v6: bool, clients: usize, requests: usize) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let spawn = |args: &[String]| -> io::Result<Child> {
        let mut c = Command::new(&exe);
        c.args(args).stdout(Stdio::piped());
        if v6 {
            c.env("TIERS_V6", "1");
        } else {
            c.env_remove("TIERS_V6");
        }
        c.spawn()
    };
    let mut backend = spawn(&["backend".into(), clients.to_string()])?;
    let bport = read_port(&mut backend)?;
    let mut middle = spawn(&["middle".into(), bport.to_string(), clients.to_string()])?;
    let mport = read_port(&mut middle)?;
    let mut client = spawn(&[
        "client".into(),
        mport.to_string(),
        clients.to_string(),
        requests.to_string(),
    ])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failed = false;
    for (name, child) in [
        ("client", &mut client),
        ("middle", &mut middle),
        ("backend", &mut backend),
    ] {
        loop {
            if let Some(st) = child.try_wait()? {
                failed |= !st.success();
                if !st.success() {
                    eprintln!("tiers: {name} exited with {st}");
                }
                break;
            }
            if Instant::now() > deadline {
                eprintln!("tiers: {name} did not exit in time; killing it");
                let _ = child.kill();
                let _ = child.wait();
                failed = true;
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    let mut out = String::new();
    if let Some(mut s) = client.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    print!("{out}");
    if failed {
        return Err(io::Error::other("a tier failed"));
    }
    Ok(())
}

fn read_port(child: &mut Child) -> io::Result<u16> {
    let out = child
        .stdout
        .as_mut()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    line.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("bad port line {line:?}")))
}

/// Spawns a thread with a name (which sets its comm, visible to strace).
fn named<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<thread::JoinHandle<T>> {
    thread::Builder::new().name(name).spawn(f)
}

fn listen(ip: IpAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
    println!("{}", l.local_addr()?.port());
    io::stdout().flush()?;
    Ok(l)
}

fn setup(s: &TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)
}

/// Reads one `\n`-terminated line with plain read() calls; None at EOF.
fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<String>> {
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
        }
        let mut chunk = [0u8; 64];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::other("EOF in the middle of a line"))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Accepts `n` connections and serves each in its own thread.
fn serve(
    l: TcpListener,
    n: usize,
    name: &str,
    handler: fn(TcpStream) -> io::Result<()>,
) -> io::Result<()> {
    let mut workers = Vec::new();
    for _ in 0..n {
        let (s, _) = l.accept()?;
        setup(&s)?;
        workers.push(named(format!("{name}-{}", workers.len()), move || {
            handler(s)
        })?);
    }
    drop(l);
    for w in workers {
        w.join()
            .map_err(|_| io::Error::other("worker panicked"))??;
    }
    Ok(())
}

fn backend(ip: IpAddr, n: usize) -> io::Result<()> {
    serve(listen(ip)?, n, "backend", |mut s| {
        let mut buf = Vec::new();
        loop {
            // Peek first, as some servers do, then consume.
            let mut p = [0u8; 1];
            if buf.is_empty() && s.peek(&mut p)? == 0 {
                return Ok(());
            }
            let Some(line) = read_line(&mut s, &mut buf)? else {
                return Ok(());
            };
            let key = line.strip_prefix("Q ").unwrap_or("?");
            s.write_all(format!("R {key}:{}\n", key.len()).as_bytes())?;
        }
    })
}

fn middle(ip: IpAddr, bport: u16, n: usize) -> io::Result<()> {
    let backend = SocketAddr::new(ip, bport);
    let l = listen(ip)?;
    let mut workers = Vec::new();
    for _ in 0..n {
        let (s, _) = l.accept()?;
        setup(&s)?;
        workers.push(named(format!("middle-{}", workers.len()), move || {
            middle_conn(s, backend)
        })?);
    }
    drop(l);
    for w in workers {
        w.join()
            .map_err(|_| io::Error::other("worker panicked"))??;
    }
    Ok(())
}

fn middle_conn(mut s: TcpStream, addr: SocketAddr) -> io::Result<()> {
    let mut b = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    setup(&b)?;
    let (mut buf, mut bbuf) = (Vec::new(), Vec::new());
    while let Some(line) = read_line(&mut s, &mut buf)? {
        let path = line.strip_prefix("GET ").unwrap_or("?");
        let mut answers = Vec::new();
        for part in ["a", "b"] {
            b.write_all(b"Q ")?;
            b.write_all(format!("{part}{path}\n").as_bytes())?;
            let r =
                read_line(&mut b, &mut bbuf)?.ok_or_else(|| io::Error::other("backend closed"))?;
            answers.push(r);
        }
        let body = format!("{} {}\n", answers[0], answers[1]);
        let head = b"OK ";
        let n = s.write_vectored(&[IoSlice::new(head), IoSlice::new(body.as_bytes())])?;
        if n < head.len() + body.len() {
            // Short writev: send the rest plainly.
            let all = [&head[..], body.as_bytes()].concat();
            s.write_all(&all[n..])?;
        }
    }
    Ok(())
}

fn client(ip: IpAddr, port: u16, clients: usize, requests: usize) -> io::Result<()> {
    let addr = SocketAddr::new(ip, port);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            named(format!("client-{c}"), move || -> io::Result<Vec<String>> {
                let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
                setup(&s)?;
                let mut buf = Vec::new();
                let mut replies = Vec::new();
                for r in 0..requests {
                    s.write_all(b"GET ")?;
                    s.write_all(b"/item/")?;
                    s.write_all(format!("{c}.{r}\n").as_bytes())?;
                    let reply = read_line(&mut s, &mut buf)?
                        .ok_or_else(|| io::Error::other("middle closed"))?;
                    replies.push(reply);
                }
                Ok(replies)
            })
        })
        .collect::<io::Result<_>>()?;
    for w in workers {
        for r in w
            .join()
            .map_err(|_| io::Error::other("client panicked"))??
        {
            println!("{r}");
        }
    }
    Ok(())
}
