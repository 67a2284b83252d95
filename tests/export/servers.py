"""The real storage services export tests write to: Azurite (npm) for az://, moto's server for s3://.

Both listen on 127.0.0.1 on a free port and are stopped by the test that started them. Azurite keeps
its blobs in a folder when given one, so a test can stop it (an outage) and start it again with its
data; otherwise in memory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port

# Azurite's development account: public, the same in every Azurite.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Azurite:
    """``azurite-blob`` on 127.0.0.1 (a free port, kept across stop/start)."""

    def __init__(self, log_dir: Path, location: Path | None = None) -> None:
        executable = shutil.which("azurite-blob")
        if executable is None:
            raise RuntimeError("azurite-blob is not installed: npm install -g azurite (.ci/run does)")
        self.executable, self.log_dir, self.location = executable, log_dir, location
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def connection_string(self, key: str = AZURITE_KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")

    def start(self) -> Azurite:
        storage = (["--location", str(self.location)] if self.location is not None else ["--inMemoryPersistence"])
        self._log = open(self.log_dir / f"azurite-{self.port}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.executable, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), *storage,
             "--disableTelemetry", "--skipApiVersionCheck", "--silent"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def filesystem(self, key: str = AZURITE_KEY):  # noqa: ANN201 - adlfs.AzureBlobFileSystem
        import adlfs

        return adlfs.AzureBlobFileSystem(connection_string=self.connection_string(key), skip_instance_cache=True)


class MotoS3:
    """moto's ``ThreadedMotoServer`` on 127.0.0.1: a real S3 endpoint, in this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def filesystem(self):  # noqa: ANN201 - s3fs.S3FileSystem
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=self.endpoint,
                                 skip_instance_cache=True)
