"""Fixtures for the official Python `kubernetes` client against Tugboat.

`TUGBOAT_KUBECONFIG` names the kubeconfig of a running `tug-apiserver`
(tests/python_client.rs starts one and sets it). Without it, a server is
started here from the workspace's target/debug, so that
`python3 -m pytest tests/python` also works by hand.
"""

import os
import pathlib
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from kubernetes import client, config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kubeconfig_path():
    path = os.environ.get("TUGBOAT_KUBECONFIG")
    if path:
        yield path
        return
    binary = pathlib.Path(os.environ.get("TUG_BIN_DIR", ROOT / "target" / "debug")) / "tug-apiserver"
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it (cargo build -p tugboat-apiserver) or set TUGBOAT_KUBECONFIG")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = pathlib.Path(tmp) / "data"
        log = open(pathlib.Path(tmp) / "server.log", "wb")
        proc = subprocess.Popen(
            [str(binary), "--data-dir", str(data_dir), "--bind-address", "127.0.0.1",
             "--secure-port", str(_free_port())],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            kubeconfig = data_dir / "admin.kubeconfig"
            deadline = time.monotonic() + 30
            while True:
                if kubeconfig.exists():
                    try:
                        config.load_kube_config(str(kubeconfig))
                        client.CoreV1Api().list_namespace(limit=1)
                        break
                    except Exception:
                        pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("tug-apiserver did not become ready")
                time.sleep(0.05)
            yield str(kubeconfig)
        finally:
            proc.kill()
            proc.wait()
            log.close()


@pytest.fixture(scope="session")
def api_client(kubeconfig_path):
    config.load_kube_config(config_file=kubeconfig_path)
    return client.ApiClient()


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core):
    """A fresh namespace for one test."""
    name = "py-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
