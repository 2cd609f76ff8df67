"""A real S3 API for tests: moto's standalone server (``python -m moto.server``) as a process.

The server speaks the S3 REST protocol on a loopback port, so code under test reaches it
the way it reaches AWS: through ``s3fs``/``botocore`` with ``AWS_ENDPOINT_URL`` and the
standard credential variables. Nothing is patched in-process. One server serves the whole
test session; each test gets its own bucket (``S3Server.bucket``), so tests never see
each other's objects.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    @classmethod
    def start(cls, timeout: float = 60.0) -> "S3Server":
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"moto.server exited with {proc.returncode}")
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                return cls(endpoint, proc)
            except OSError:
                time.sleep(0.2)
        proc.kill()
        raise RuntimeError(f"moto.server did not answer on {endpoint} within {timeout}s")

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point clients at this server."""
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self, prefix: str = "figalign") -> str:
        """Create a fresh, empty bucket and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def clear_fsspec_cache() -> None:
    """s3fs caches filesystem instances (and their endpoint) per process: drop them between tests."""
    import fsspec

    for cls in (fsspec.get_filesystem_class("s3"),):
        cls.clear_instance_cache()
    os.environ.pop("FSSPEC_S3_ENDPOINT_URL", None)
