"""The network to Yahoo, replaced: a requests transport adapter serving recorded chart-API JSON.

yfinance accepts a ``requests.Session``; mounting this adapter on one means every byte yfinance reads
comes from files under ``tests/ingest/recordings/`` while yfinance's own request building, cookie and
crumb handling, JSON decoding and DataFrame construction all run unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests
from requests.adapters import BaseAdapter

RECORDINGS = Path(__file__).parent / "recordings"


class RecordedYahoo(BaseAdapter):
    """Answers yfinance's HTTP requests from recordings; `fail_first` answers 429 to that many chart calls."""

    def __init__(self, directory: Path = RECORDINGS, fail_first: int = 0, status: int = 429) -> None:
        super().__init__()
        self.directory = directory
        self.fail_first = fail_first
        self.fail_status = status
        self.requests: list[str] = []

    def send(self, request, **kwargs) -> requests.Response:
        url = urlparse(request.url)
        self.requests.append(request.url)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.endswith("/v1/test/getcrumb"):
            return self._response(request, 200, b"recorded-crumb", "text/plain")
        if url.netloc.startswith("fc.yahoo"):
            return self._response(request, 200, b"", "text/html")
        if "/v8/finance/chart/" in url.path:
            if self.fail_first > 0:
                self.fail_first -= 1
                return self._response(request, self.fail_status, b"Too Many Requests", "text/plain")
            symbol = url.path.rsplit("/", 1)[-1]
            interval = params.get("interval", "1d")
            path = self.directory / f"chart_{symbol}_{interval}.json"
            if not path.is_file():
                path = self.directory / f"chart_{symbol}_1d.json"
            if path.is_file():
                return self._response(request, 200, path.read_bytes(), "application/json")
            not_found = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
            error = {"chart": {"result": None, "error": not_found}}
            return self._response(request, 404, json.dumps(error).encode(), "application/json")
        return self._response(request, 404, b"{}", "application/json")

    @staticmethod
    def _response(request, status: int, body: bytes, content_type: str) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.headers["Content-Type"] = content_type
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def recorded_session(adapter: RecordedYahoo) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
