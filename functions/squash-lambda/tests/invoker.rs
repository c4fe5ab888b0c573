//! The Lambda invoker against a fake Lambda API on loopback: which failures are retried
//! (throttling, 5xx, a crashed container) and which are not (unknown function, a
//! worker's refusal), and that answers come back decoded.

use squash_api::{WireReply, WorkerRequest, WorkerResponse};
use squash_engine::invoker::WorkerInvoker;
use squash_lambda::{Config, LambdaInvoker};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, String);

/// Serves the scripted answers in order (the last one repeats) and records the paths.
fn fake_lambda(script: Vec<Answer>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            log.lock()
                .unwrap()
                .push(line.split_whitespace().nth(1).unwrap_or("").to_string());
            let mut len = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let (status, headers, body) = &script[n.min(script.len() - 1)];
            let mut out = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(body);
            let _ = stream.write_all(out.as_bytes());
        }
    });
    (format!("http://{addr}"), seen)
}

fn config(endpoint: &str) -> Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("SQUASH_INDEX_ROOT", "/nowhere".to_string()),
        ("SQUASH_LAMBDA_ENDPOINT", endpoint.to_string()),
        ("SQUASH_INVOKE_ATTEMPTS", "3".to_string()),
        ("SQUASH_INVOKE_TIMEOUT_MS", "5000".to_string()),
    ]);
    Config::from_lookup(&|k| vars.get(k).cloned()).unwrap()
}

fn request() -> WorkerRequest {
    serde_json::from_str(include_str!("../../../events/worker-request.json")).unwrap()
}

fn invoke(script: Vec<Answer>) -> (Result<WorkerResponse, String>, Vec<String>) {
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    let (endpoint, seen) = fake_lambda(script);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let invoker = rt.block_on(LambdaInvoker::new(&config(&endpoint)));
    // As in the functions: invoke_all runs on a blocking thread beside the runtime.
    let got = std::thread::spawn(move || invoker.invoke_all(&[request()]).remove(0))
        .join()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    (got, seen)
}

fn reply() -> String {
    let resp = WorkerResponse {
        answers: vec![],
        invocations: 0,
        cold_workers: 1,
        billed_ms: 1,
    };
    serde_json::to_string(&WireReply::new(&resp).unwrap()).unwrap()
}

#[test]
fn throttling_and_crashes_are_retried_then_answered() {
    let throttled: Answer = (
        429,
        vec![("x-amzn-errortype", "TooManyRequestsException")],
        r#"{"message":"Rate exceeded"}"#.into(),
    );
    let crashed: Answer = (
        200,
        vec![("x-amz-function-error", "Unhandled")],
        r#"{"errorMessage":"boom"}"#.into(),
    );
    let (got, seen) = invoke(vec![throttled, crashed, (200, vec![], reply())]);
    assert_eq!(got.unwrap().cold_workers, 1);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].contains("/functions/squash-worker-0/invocations"), "{seen:?}");
}

#[test]
fn permanent_failures_are_not_retried_and_name_the_function() {
    let missing: Answer = (
        404,
        vec![("x-amzn-errortype", "ResourceNotFoundException")],
        r#"{"Type":"User","message":"Function not found"}"#.into(),
    );
    let (got, seen) = invoke(vec![missing]);
    let err = got.unwrap_err();
    assert!(
        err.contains("squash-worker-0") && err.contains("attempt 1 of 3"),
        "{err}"
    );
    assert_eq!(seen.len(), 1);

    let refused: Answer = (200, vec![], r#"{"error":"not a worker request"}"#.into());
    let (got, seen) = invoke(vec![refused]);
    assert!(got.unwrap_err().contains("refused"));
    assert_eq!(seen.len(), 1);
}

#[test]
fn a_server_that_keeps_failing_costs_the_configured_attempts() {
    let broken: Answer = (503, vec![("x-amzn-errortype", "ServiceException")], "{}".into());
    let (got, seen) = invoke(vec![broken]);
    assert!(got.unwrap_err().contains("attempt 3 of 3"));
    assert_eq!(seen.len(), 3);
}
