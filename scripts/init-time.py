#!/usr/bin/env python3
"""Init time of the function binaries: from process start to the first poll of the Lambda
runtime API (`GET .../invocation/next`), which is where AWS's billed init ends. A stand-in
runtime API on 127.0.0.1 records the poll; nothing else is contacted (the binaries build
their S3 and Lambda clients without connecting). Prints each run and the median, in ms.
`squash_engine::cost::INIT_MS` is this median. Standard library only.

    scripts/init-time.py [--runs 9] [--bin-dir target/release]
"""
import argparse, http.server, os, statistics, subprocess, threading, time

first = {}


class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        first.setdefault("t", time.perf_counter())
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--port", type=int, default=9911)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Runtime)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{a.port}", SQUASH_INDEX_ROOT="s3://bucket/indexes",
               AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_REGION="us-east-1",
               AWS_LAMBDA_FUNCTION_NAME="f", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048", AWS_LAMBDA_FUNCTION_VERSION="1")
    for binary in ["squash-coordinator", "squash-worker"]:
        runs = []
        for _ in range(a.runs):
            first.clear()
            t0 = time.perf_counter()
            p = subprocess.Popen([os.path.join(a.bin_dir, binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while "t" not in first and time.perf_counter() - t0 < 10:
                time.sleep(0.0002)
            p.kill()
            p.wait()
            runs.append((first.get("t", float("inf")) - t0) * 1000)
        print(f"{binary}: init {statistics.median(runs):.1f} ms median ({', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
