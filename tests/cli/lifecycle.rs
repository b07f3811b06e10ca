//! `faultline stack up`: what it prints, how it stops, and that it leaves nothing behind
//! even when it is SIGKILLed.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::procs;

struct StackUp {
    child: Child,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

fn stack_up() -> StackUp {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["stack", "up", "--data-dir"])
        .arg(data.path())
        .env("FAULTLINE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("faultline runs");
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    StackUp {
        child,
        lines,
        _data: data,
    }
}

impl StackUp {
    /// The env lines, once the stack is up: three addresses, then the Kafka super user's
    /// name, password and property files.
    fn env_lines(&mut self) -> Vec<String> {
        (0..7)
            .map(|i| {
                self.lines
                    .recv_timeout(Duration::from_secs(180))
                    .unwrap_or_else(|_| panic!("line {} of `stack up` never came", i + 1))
            })
            .collect()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for StackUp {
    /// A failed assertion must not leave a stack running without its data directory.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(Signal::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

fn port_of(value: &str) -> u16 {
    let after_host = value.rsplit("127.0.0.1:").next().unwrap();
    after_host
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no port in {value}"))
}

fn check_env_lines(lines: &[String]) -> Vec<u16> {
    let kafka = lines[0]
        .strip_prefix("KAFKA_BOOTSTRAP=127.0.0.1:")
        .unwrap_or_else(|| panic!("{}", lines[0]));
    assert!(
        kafka.parse::<u16>().is_ok(),
        "one broker, one address: {}",
        lines[0]
    );
    let database = lines[1]
        .strip_prefix("DATABASE_URL=postgres://faultline@127.0.0.1:")
        .unwrap_or_else(|| panic!("{}", lines[1]));
    assert!(database.ends_with("/faultline"), "{}", lines[1]);
    let redis = lines[2]
        .strip_prefix("REDIS_URL=redis://127.0.0.1:")
        .unwrap_or_else(|| panic!("{}", lines[2]));
    assert!(redis.parse::<u16>().is_ok(), "{}", lines[2]);
    assert_eq!(lines[3], "KAFKA_SASL_USERNAME=admin");
    let password = lines[4].strip_prefix("KAFKA_SASL_PASSWORD=").unwrap();
    assert!(password.len() >= 32, "{}", lines[4]);
    for (line, key) in [
        (&lines[5], "KAFKA_CLIENT_PROPERTIES="),
        (&lines[6], "KAFKA_COMMAND_CONFIG="),
    ] {
        let path = line.strip_prefix(key).unwrap_or_else(|| panic!("{line}"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(password), "{path} lacks the password");
    }
    let lines = &lines[..3];
    lines.iter().map(|l| port_of(l)).collect()
}

#[test]
fn stack_up_prints_its_env_lines_and_stops_everything_on_sigterm() {
    let mut up = stack_up();
    let lines = up.env_lines();
    let ports = check_env_lines(&lines);
    for port in &ports {
        TcpStream::connect(("127.0.0.1", *port)).unwrap_or_else(|e| panic!("port {port}: {e}"));
    }
    let groups = procs::child_groups(up.child.id());
    assert_eq!(
        groups.len(),
        3,
        "expected postgres, redis-server and one Kafka JVM, found groups {groups:?}"
    );
    let stack_processes = procs::descendants(up.child.id());

    up.signal(Signal::SIGTERM);
    let status = up.child.wait().unwrap();
    assert!(status.success(), "stack up exited with {status} on SIGTERM");
    // Nothing else was printed on stdout.
    let extra: Vec<String> = up.lines.try_iter().collect();
    assert!(
        extra.is_empty(),
        "stdout had more than the env lines: {extra:?}"
    );
    procs::wait_until_gone(&stack_processes, Duration::from_secs(5))
        .unwrap_or_else(|alive| panic!("still alive after a clean stop: {alive:?}"));
}

#[test]
fn sigkill_of_stack_up_leaves_no_process_of_its_stack_alive() {
    let mut up = stack_up();
    let ports = check_env_lines(&up.env_lines());
    let groups = procs::child_groups(up.child.id());
    assert_eq!(
        groups.len(),
        3,
        "expected three component groups, found {groups:?}"
    );
    // postgres' own children (checkpointer, walwriter, ...) count too.
    let stack_processes = procs::descendants(up.child.id());
    assert!(
        stack_processes.len() > 3,
        "expected postgres' helpers among {stack_processes:?}"
    );

    up.signal(Signal::SIGKILL);
    let _ = up.child.wait();
    procs::wait_until_gone(&stack_processes, Duration::from_secs(20))
        .unwrap_or_else(|alive| panic!("processes of the stack outlived its owner: {alive:?}"));
    // The kernel closes a killed process' sockets as its last thread exits; allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for port in ports {
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "something still listens on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
