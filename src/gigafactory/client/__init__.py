"""A typed Python client for the gigafactory control plane (httpx), used by the CLI.

>>> from gigafactory.client import Client
>>> gf = Client("http://127.0.0.1:8000", token="gf_...")
>>> job = gf.submit(project="alpha", gpus=8, command=["python", "train.py"], walltime=7200)
>>> gf.job(job.id).pending_reason
"""

from gigafactory.client.api import ApiError, Client
from gigafactory.client.config import (
    Credentials,
    load_credentials,
    parse_duration,
    save_credentials,
)

__all__ = [
    "ApiError",
    "Client",
    "Credentials",
    "load_credentials",
    "parse_duration",
    "save_credentials",
]
