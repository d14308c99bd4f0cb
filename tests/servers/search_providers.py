"""Real HTTP servers on loopback speaking the wire formats of the web search APIs we support.

One ``SearchProviderServer`` plays Serper, Tavily, Brave or SearXNG: it checks each request the
way the real API does (method, path, auth header, JSON body or query fields; bad ones get the
provider's own error reply and are recorded in ``violations``) and answers with the provider's
response shape, built from a list of canonical hits. Faults (the provider's real error bodies and
headers, slow replies, broken JSON) are queued per request with ``push``.

    with SearchProviderServer("serper", key="k", hits=HITS) as server:
        server.push(server.rate_limited(retry_after=0.2))   # the next request gets a 429
        backend = SerperSearch(endpoint=server.base_url)
"""

from __future__ import annotations

import collections
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from servers.web_pages import QuietServer

__all__ = ["PROVIDERS", "Fault", "Recorded", "SearchProviderServer"]

PROVIDERS = ("serper", "tavily", "brave", "searxng")


@dataclass
class Fault:
    """A scripted reply for one request: any status, headers and body (dict: sent as JSON), or
    the normal reply after ``delay_s`` when ``status`` is None."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0  # > 0: the reply's body goes out 16 bytes at a time, this long apart

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """The normal reply, late."""
        return cls(delay_s=delay_s)

    @classmethod
    def raw(cls, text: str, status: int = 200, content_type: str = "application/json") -> Fault:
        """A body sent as is (e.g. broken JSON)."""
        return cls(status=status, body=text, headers={"Content-Type": content_type})


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float


class SearchProviderServer:
    """A loopback stand-in for one search provider (``serper``, ``tavily``, ``brave``, ``searxng``)."""

    def __init__(
        self,
        provider: str,
        *,
        key: str | None = None,
        hits: list[dict[str, Any]] | None = None,
        json_enabled: bool = True,
        latency_s: float = 0.0,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(provider)
        self.provider = provider
        self.key = key
        self.hits = list(hits or [])
        self.json_enabled = json_enabled
        self.latency_s = latency_s
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: collections.deque[Fault | None] = collections.deque()
        self._lock = threading.Lock()
        self._httpd = QuietServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval keeps shutdown() (and so each test) fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SearchProviderServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SearchProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, *faults: Fault | None) -> None:
        """Queue replies for the next requests, in order (None: the normal reply)."""
        self._faults.extend(faults)

    # -- the provider's own error replies ------------------------------------------------------

    def unauthorized(self) -> Fault:
        """What the provider answers to a missing or wrong key."""
        return {
            "serper": Fault(403, {"message": "Unauthorized.", "statusCode": 403}),
            "tavily": Fault(
                401, {"detail": {"error": "Unauthorized: missing or invalid API key."}}
            ),
            "brave": Fault(
                422,
                _brave_error(
                    422, "SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid."
                ),
            ),
            "searxng": Fault(
                403,
                "<html><body><h1>403 Forbidden</h1></body></html>",
                {"Content-Type": "text/html"},
            ),
        }[self.provider]

    def quota_exhausted(self) -> Fault:
        """What the provider answers when the account's credits or plan are used up."""
        return {
            "serper": Fault(403, {"message": "Not enough credits", "statusCode": 403}),
            "tavily": Fault(
                432,
                {
                    "detail": {
                        "error": "This request exceeds your plan's set usage "
                        "limit. Please upgrade your plan."
                    }
                },
            ),
            "brave": Fault(
                429,
                _brave_error(429, "RATE_LIMITED", "Request rate limit exceeded for plan."),
                _brave_limits(remaining="0, 0", reset="1, 1209600"),
            ),
            "searxng": Fault(429, "Too Many Requests", {"Content-Type": "text/plain"}),
        }[self.provider]

    def rate_limited(self, retry_after: float | None = None) -> Fault:
        """A per-second rate limit; Brave says when to retry in ``X-RateLimit-Reset`` instead."""
        headers: dict[str, str] = {}
        if retry_after is not None and self.provider != "brave":
            headers["Retry-After"] = f"{retry_after:g}"
        if self.provider == "serper":
            return Fault(429, {"message": "Too many requests", "statusCode": 429}, headers)
        if self.provider == "tavily":
            return Fault(
                429, {"detail": {"error": "Rate limit exceeded. Please slow down."}}, headers
            )
        if self.provider == "brave":
            reset = f"{retry_after:g}" if retry_after is not None else "1"
            return Fault(
                429,
                _brave_error(429, "RATE_LIMITED", "Request rate limit exceeded for plan."),
                _brave_limits(remaining="0, 14000", reset=f"{reset}, 1209600"),
            )
        return Fault(429, "Too Many Requests", {"Content-Type": "text/plain", **headers})

    def server_error(self, status: int = 500) -> Fault:
        """A transient failure on the provider's side."""
        if self.provider == "searxng":
            return Fault(status, "Internal Server Error", {"Content-Type": "text/plain"})
        if self.provider == "brave":
            return Fault(status, _brave_error(status, "INTERNAL", "Internal server error."))
        if self.provider == "tavily":
            return Fault(status, {"detail": {"error": "Internal server error"}})
        return Fault(status, {"message": "Internal server error", "statusCode": status})

    # -- request handling ----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._serve(handler)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        query = {name: values[-1] for name, values in parse_qs(split.query).items()}
        request = Recorded(
            handler.command,
            split.path,
            query,
            {name.lower(): value for name, value in handler.headers.items()},
            body,
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
            fault = self._faults.popleft() if self._faults else None
        delay = self.latency_s + (fault.delay_s if fault else 0.0)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.status is not None:
            self._send(handler, fault.status, fault.body, fault.headers, drip_s=fault.drip_s)
            return
        rejection = self._check(request)
        if rejection is not None:
            self._send(handler, rejection.status or 400, rejection.body, rejection.headers)
            return
        headers = _brave_limits() if self.provider == "brave" else {}
        self._send(handler, 200, self._render(request), headers,
                   drip_s=fault.drip_s if fault else 0.0)

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str],
        *, drip_s: float = 0.0,
    ) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            content_type = "application/json"
        elif isinstance(body, bytes):  # sent as is (a compressed body: with its own headers)
            data = body
            content_type = "application/json"
        else:
            data = str(body or "").encode()
            content_type = "text/plain; charset=utf-8"
        handler.send_response(status)
        headers = {"Content-Type": content_type, **headers}
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not drip_s:
            handler.wfile.write(data)
            return
        for start in range(0, len(data), 16):
            handler.wfile.write(data[start : start + 16])
            handler.wfile.flush()
            time.sleep(drip_s)

    # -- the real APIs' checks and response shapes ---------------------------------------------

    def _reject(self, why: str) -> Fault:
        self.violations.append(why)
        if self.provider == "serper":
            return Fault(400, {"message": why, "statusCode": 400})
        if self.provider == "tavily":
            return Fault(400, {"detail": {"error": why}})
        if self.provider == "brave":
            return Fault(422, _brave_error(422, "VALIDATION", why))
        return Fault(400, why)

    def _check(self, r: Recorded) -> Fault | None:
        if self.provider == "serper":
            if (r.method, r.path) != ("POST", "/search"):
                return Fault(404, {"message": "Not found", "statusCode": 404})
            if r.headers.get("x-api-key") != self.key:
                return self.unauthorized()
            body = r.body if isinstance(r.body, dict) else {}
            if not isinstance(body.get("q"), str) or not body["q"]:
                return self._reject("q is required")
            num = body.get("num", 10)
            if not isinstance(num, int) or not 1 <= num <= 100:
                return self._reject(f"bad num {num!r}")
            unknown = set(body) - {"q", "num", "gl", "hl", "page", "location", "tbs", "autocorrect"}
            if unknown:
                return self._reject(f"unknown fields {sorted(unknown)}")
            if "application/json" not in r.headers.get("content-type", ""):
                return self._reject("body must be JSON")
        elif self.provider == "tavily":
            if (r.method, r.path) != ("POST", "/search"):
                return Fault(404, {"detail": "Not Found"})
            if not (self.key and self.key.startswith("tvly-")):
                raise AssertionError("a Tavily key starts with tvly-")
            if r.headers.get("authorization") != f"Bearer {self.key}":
                return self.unauthorized()
            body = r.body if isinstance(r.body, dict) else {}
            if not isinstance(body.get("query"), str) or not body["query"]:
                return self._reject("query is required")
            max_results = body.get("max_results", 5)
            if not isinstance(max_results, int) or not 0 <= max_results <= 20:
                return self._reject("max_results must be between 0 and 20")
            if body.get("search_depth", "basic") not in ("basic", "advanced", "fast", "ultra-fast"):
                return self._reject("search_depth must be basic or advanced")
        elif self.provider == "brave":
            if (r.method, r.path) != ("GET", "/res/v1/web/search"):
                return Fault(404, _brave_error(404, "NOT_FOUND", "Not found"))
            if r.headers.get("x-subscription-token") != self.key:
                return self.unauthorized()
            q = r.query.get("q", "")
            if not q or len(q) > 400:
                return self._reject("q must be 1-400 characters")
            count = r.query.get("count", "20")
            if not count.isdigit() or not 1 <= int(count) <= 20:
                return self._reject("count must be between 1 and 20")
            if "country" in r.query and len(r.query["country"]) != 2:
                return self._reject("country must be a 2-letter code")
        else:
            if (r.method, r.path) not in (("GET", "/search"), ("POST", "/search")):
                return Fault(404, "Not Found")
            if r.query.get("format", "html") != "json":
                return self._reject("this stand-in serves only format=json")
            if not self.json_enabled:
                # What SearXNG answers when `json` is not in search.formats of settings.yml.
                return Fault(
                    403,
                    "<html><body><h1>403 Forbidden</h1></body></html>",
                    {"Content-Type": "text/html"},
                )
            if not r.query.get("q"):
                return self._reject("q is required")
        return None

    def _render(self, r: Recorded) -> dict[str, Any]:
        hits = self.hits
        if self.provider == "serper":
            body = r.body
            organic = []
            for i, hit in enumerate(hits[: body.get("num", 10)], start=1):
                item = {
                    "title": hit["title"],
                    "link": hit["url"],
                    "snippet": hit["snippet"],
                    "position": i,
                }
                if hit.get("date"):
                    item["date"] = hit["date"]
                organic.append(item)
            params = {
                "q": body["q"],
                "type": "search",
                "num": body.get("num", 10),
                "page": body.get("page", 1),
                "engine": "google",
            }
            params.update({key: body[key] for key in ("gl", "hl") if key in body})
            return {"searchParameters": params, "organic": organic, "credits": 1}
        if self.provider == "tavily":
            body = r.body
            return {
                "query": body["query"],
                "follow_up_questions": None,
                "answer": None,
                "images": [],
                "results": [
                    {
                        "title": h["title"],
                        "url": h["url"],
                        "content": h["snippet"],
                        "score": h.get("score", 0.5),
                        "raw_content": None,
                    }
                    for h in hits[: body.get("max_results", 5)]
                ],
                "response_time": 0.42,
                "request_id": str(uuid.uuid4()),
            }
        if self.provider == "brave":
            count = int(r.query.get("count", "20"))
            reply: dict[str, Any] = {
                "type": "search",
                "query": {
                    "original": r.query["q"],
                    "show_strict_warning": False,
                    "is_navigational": False,
                    "country": r.query.get("country", "us"),
                },
                "mixed": {"type": "mixed", "main": [], "top": [], "side": []},
            }
            if hits:  # Brave leaves `web` out when there are no web results
                reply["web"] = {
                    "type": "search",
                    "family_friendly": True,
                    "results": [
                        {
                            "type": "search_result",
                            "title": h["title"],
                            "url": h["url"],
                            "description": h["snippet"],
                            "is_source_local": False,
                            "language": "en",
                            "family_friendly": True,
                            **({"extra_snippets": h["extra"]} if h.get("extra") else {}),
                        }
                        for h in hits[:count]
                    ],
                }
            return reply
        return {
            "query": r.query["q"],
            "number_of_results": 0,
            "results": [
                {
                    "url": h["url"],
                    "title": h["title"],
                    "content": h["snippet"],
                    "engine": "wikipedia",
                    "engines": ["wikipedia"],
                    "positions": [i],
                    "score": h.get("score", 1.0),
                    "category": "general",
                }
                for i, h in enumerate(hits, start=1)
            ],
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        }


def _brave_error(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "type": "ErrorResponse",
        "error": {
            "id": str(uuid.uuid4()),
            "status": status,
            "code": code,
            "detail": detail,
            "meta": {"component": "api"},
        },
        "time": int(time.time()),
    }


def _brave_limits(remaining: str = "0, 14000", reset: str = "1, 1209600") -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "1, 15000",
        "X-RateLimit-Policy": "1;w=1, 15000;w=2592000",
        "X-RateLimit-Remaining": remaining,
        "X-RateLimit-Reset": reset,
    }
