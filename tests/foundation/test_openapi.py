"""The services' OpenAPI documents (docs/api/) against what the services serve and route (issue 17 item 2).

Each document is checked structurally as OpenAPI 3.1 (plain checks: no validator is a dependency), served byte
for byte at ``GET /openapi.json``, and exercised: a request to every documented operation answers one of its
documented status codes (never the "unknown endpoint" 404), and an undocumented path answers that 404.  The
replica, proxy and consortium handlers run in-process over a stub of their service object (routing is the
handler's; the stubs answer what the service would on an empty store); the portal's check is in
tests/portal/test_server.py (it needs an unlocked portal), and tests/sharing/test_journey_e2e.py runs the same
requests against every launched replica, consortium node and proxy process, holding their JSON answers to the
documented schemas.  The storage node's Kubo subset (docs/api/storage.md) is checked against the node's routes
and ``add`` options.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from mbds_py.apidoc import API_DIR, SERVICES, openapi_bytes
from mbds_py.sharing.proxy import Refusal

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "api"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def load(service: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{service}.json").read_text())


# ------------------------------------------------------------------------------------------------
# (1) structure
# ------------------------------------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(kind: str, value: Any) -> bool:
    if kind in ("integer", "number"):
        return not isinstance(value, bool) and isinstance(value, int if kind == "integer" else (int, float))
    return isinstance(value, _TYPES[kind])


def schema_errors(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema``: the JSON Schema keywords the documents use (type, const, enum,
    pattern, minimum, properties, required, additionalProperties, items, prefixItems, min/maxItems, allOf,
    oneOf, $ref) — enough to hold the documents to real answers without a validator dependency."""
    if "$ref" in schema:
        return schema_errors(doc, _resolve(doc, schema["$ref"]), value, where)
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_is(k, value) for k in kinds):
        return [f"{where}: {value!r} is not {'/'.join(kinds)}"]
    bad = [e for sub in schema.get("allOf", []) for e in schema_errors(doc, sub, value, where)]
    if "oneOf" in schema and sum(not schema_errors(doc, sub, value, where) for sub in schema["oneOf"]) != 1:
        bad.append(f"{where}: not exactly one of oneOf")
    if "const" in schema and value != schema["const"]:
        bad.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        bad.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        bad.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if _is("number", value) and value < schema.get("minimum", value):
        bad.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        bad += [f"{where}: {name} missing" for name in schema.get("required", []) if name not in value]
        for name, v in value.items():
            if name in props:
                bad += schema_errors(doc, props[name], v, f"{where}.{name}")
            elif extra is False:
                bad.append(f"{where}: {name} is not documented")
            elif isinstance(extra, dict):
                bad += schema_errors(doc, extra, v, f"{where}.{name}")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            bad.append(f"{where}: {len(value)} items")
        for i, v in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub is not None:
                bad += schema_errors(doc, sub, v, f"{where}[{i}]")
    return bad


def test_the_schema_check_finds_what_it_should():
    doc = load("replica")
    ack = {"$ref": "#/components/schemas/SlipAck"}
    assert schema_errors(doc, ack, {"slip_id": "0x" + "ab" * 32, "status": "accepted"}) == []
    assert schema_errors(doc, ack, {"error": "doctor 0x… is not registered"}) == []
    assert schema_errors(doc, ack, {"slip_id": "0x" + "ab" * 32, "status": "accepted", "error": "both"}) == [
        "$: not exactly one of oneOf"]
    assert schema_errors(doc, ack, {"slip_id": "0xAB", "status": "lost", "extra": 1}) == [
        "$.slip_id: '0xAB' does not match ^0x[0-9a-f]{64}$",
        "$.status: 'lost' not in ['accepted', 'already-pending', 'already-committed', 'committed']",
        "$: extra is not documented"]
    status = {"$ref": "#/components/schemas/Status"}
    assert schema_errors(doc, status, {"chain": "a", "replica": True, "view": 0, "primary": False, "head": 0,
                                       "delivered_slips": 0, "anchored": 0, "uptime": 1.5,
                                       "commit_latency_ms": [[1, 2, 3.5], [1, "2", 3]]}) == [
        "$: peers_connected missing", "$.replica: True is not integer", "$.commit_latency_ms[1][1]: '2' is not integer"]


def structural_problems(doc: dict[str, Any]) -> list[str]:
    """What keeps ``doc`` from being a well-formed OpenAPI 3.1 document (the spec's required fields and
    references); empty when it is."""
    bad: list[str] = []
    if doc.get("openapi") != "3.1.0":
        bad.append(f"openapi is {doc.get('openapi')!r}")
    info = doc.get("info", {})
    if not (isinstance(info.get("title"), str) and isinstance(info.get("version"), str)):
        bad.append("info needs title and version strings")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    ids: list[str] = []
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/"):
            bad.append(f"path {path!r} does not start with /")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            if method not in METHODS:
                bad.append(f"{where}: not an HTTP method")
                continue
            ids.append(op.get("operationId"))
            params = [_resolve(doc, p["$ref"]) if "$ref" in p else p for p in op.get("parameters", [])]
            for p in params:
                if p.get("in") not in ("query", "header", "path", "cookie") or not p.get("name"):
                    bad.append(f"{where}: parameter {p} needs name and in")
                if ("schema" in p) == ("content" in p):
                    bad.append(f"{where}: parameter {p.get('name')} needs schema or content")
                if p.get("in") == "path" and p.get("required") is not True:
                    bad.append(f"{where}: path parameter {p.get('name')} must be required")
            if {p["name"] for p in params if p.get("in") == "path"} != templated:
                bad.append(f"{where}: path parameters do not match the template")
            body = op.get("requestBody")
            if body is not None and not body.get("content"):
                bad.append(f"{where}: requestBody needs content")
            responses = op.get("responses") or {}
            if not responses:
                bad.append(f"{where}: no responses")
            for code, resp in responses.items():
                if not re.fullmatch(r"[1-5](\d\d|XX)|default", code):
                    bad.append(f"{where}: response code {code!r}")
                if "$ref" not in resp and not isinstance(resp.get("description"), str):
                    bad.append(f"{where} {code}: response needs a description")
            for requirement in op.get("security", doc.get("security", [])):
                bad.extend(f"{where}: unknown security scheme {name}" for name in requirement if name not in schemes)
    if len(ids) != len(set(ids)) or None in ids:
        bad.append(f"operationIds must be present and unique: {ids}")
    for ref in _refs(doc):
        try:
            _resolve(doc, ref)
        except (KeyError, AssertionError):
            bad.append(f"unresolved $ref {ref}")
    return bad


@pytest.mark.parametrize("service", SERVICES)
def test_each_document_is_well_formed_openapi_3_1(service):
    assert structural_problems(load(service)) == []


def test_the_structural_check_finds_what_it_should():
    doc = load("replica")
    doc["openapi"] = "3.0.3"
    doc["paths"]["/v1/records/{record_id}"]["get"]["parameters"] = []
    doc["paths"]["/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = \
        {"$ref": "#/components/schemas/Nope"}
    assert structural_problems(doc) == ["openapi is '3.0.3'",
                                        "GET /v1/records/{record_id}: path parameters do not match the template",
                                        "unresolved $ref #/components/schemas/Nope"]


def test_docs_api_is_the_packaged_source():
    """One source: docs/api is the shipped package data, and the package ships every document."""
    assert DOCS.resolve() == API_DIR.resolve()
    assert sorted(p.stem for p in API_DIR.glob("*.json")) == sorted(SERVICES)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/api/*.json"' in pyproject
    for service in SERVICES:
        assert openapi_bytes(service) == (DOCS / f"{service}.json").read_bytes()


# ------------------------------------------------------------------------------------------------
# (2), (3) served and routed: requests made from the document
# ------------------------------------------------------------------------------------------------


def operations(doc: dict[str, Any], *, last: tuple[str, ...] = ()) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) of every documented operation; paths in ``last`` go last."""
    ops = [(method.upper(), path, op) for path, item in doc["paths"].items() for method, op in item.items()]
    return sorted(ops, key=lambda o: o[1] in last)


def request_for(path: str, op: dict[str, Any], form: Callable[[], dict[str, str]] | None = None
                ) -> tuple[str, dict[str, Any]]:
    """A request to ``op``: path and required query parameters from their examples, a minimal body of the
    documented media type (a form: what ``form()`` gives)."""
    query = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", str(p["example"]))
        elif p["in"] == "query" and p.get("required"):
            query[p["name"]] = p["example"]
    kwargs: dict[str, Any] = {"params": query, "allow_redirects": False, "timeout": 30}
    media = next(iter(op.get("requestBody", {}).get("content", {})), None)
    if media == "application/json":
        kwargs["json"] = {}
    elif media == "application/octet-stream":
        kwargs["data"] = b"\x00"
    elif media == "application/x-www-form-urlencoded":
        kwargs["data"] = form() if form else {}
    return path, kwargs


def exercise(base: str, doc: dict[str, Any], *, session: requests.Session | None = None,
             form: Callable[[], dict[str, str]] | None = None, last: tuple[str, ...] = (),
             validate: bool = False) -> dict[str, int]:
    """Send a request to every documented operation; each must answer a documented code with a documented
    media type, not an unknown endpoint (``validate``: and a JSON body its schema allows; for a real service,
    not a stub).  Returns ``{"METHOD path": status}``."""
    http = session or requests.Session()
    seen: dict[str, int] = {}
    for method, template, op in operations(doc, last=last):
        path, kwargs = request_for(template, op, form)
        with http.request(method, base + path, stream=True, **kwargs) as resp:  # streamed: /events never ends
            key = f"{method} {template}"
            seen[key] = resp.status_code
            assert str(resp.status_code) in op["responses"], (key, resp.status_code, dict(resp.headers))
            documented = op["responses"][str(resp.status_code)]
            documented = _resolve(doc, documented["$ref"]) if "$ref" in documented else documented
            media = resp.headers.get("Content-Type", "").split(";")[0]
            if "content" in documented:
                assert media in documented["content"], (key, media, list(documented["content"]))
            if validate and media == "application/json":
                assert schema_errors(doc, documented["content"][media]["schema"], resp.json()) == [], key
            if resp.status_code == 404 and media == "application/json":
                assert not str(resp.json().get("error", "")).startswith("unknown endpoint"), key
    return seen


def served_exactly(base: str, service: str, http: requests.Session | None = None) -> None:
    resp = (http or requests.Session()).get(base + "/openapi.json", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    assert resp.content == (DOCS / f"{service}.json").read_bytes()


def _unknown(base: str, method: str, path: str, **kwargs: Any) -> None:
    resp = requests.request(method, base + path, timeout=30, **kwargs)
    assert (resp.status_code, resp.json()) == (404, {"error": f"unknown endpoint {method} {path}"})


@pytest.fixture()
def serve_app():
    """Serve an aiohttp application on a fresh loopback port; its base URL."""
    from mbds_py.listen import bind_listener
    from mbds_py.web import Server

    servers: list[Server] = []

    def start(app: Any) -> str:
        servers.append(Server(app, bind_listener("127.0.0.1", 0), name="openapi-test").start())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def test_the_replica_serves_its_document_and_routes_what_it_documents(serve_app):
    from mbds_py.private.node import make_api

    async def accepted(body: bytes, offload: Any) -> dict[str, str]:
        return {"slip_id": "0x" + "11" * 32, "status": "accepted"}

    async def no_acks(body: bytes, offload: Any) -> list:
        return []

    node = SimpleNamespace(
        status=lambda: {"chain": "hospital-a"}, receipt=lambda slip_id: None,
        pending_for=lambda patient: [], pending_envelope=lambda record_id: None,
        submit_confirmed=accepted, submit_batch=no_acks,
        submit_envelope=lambda body: {"record_id": "0x" + "33" * 32, "status": "pending-confirmation"})
    base = serve_app(make_api(node))
    served_exactly(base, "replica")
    assert exercise(base, load("replica")) == {
        "GET /openapi.json": 200, "GET /v1/status": 200, "GET /v1/slips/{slip_id}/receipt": 404,
        "GET /v1/records": 200, "POST /v1/records": 201, "GET /v1/records/{record_id}": 404,
        "POST /v1/slips": 202, "POST /v1/slips/batch": 200}
    _unknown(base, "GET", "/v1/blocks")
    _unknown(base, "POST", "/v1/blocks", data=b"\x00")


def test_the_replicas_429_is_as_documented(serve_app):
    from mbds_py.errors import Overloaded
    from mbds_py.private.node import make_api

    async def overloaded(body: bytes, offload: Any) -> None:
        raise Overloaded("replica 0 holds 200 unordered slips (limit 200): retry later", retry_after=0.2)

    base = serve_app(make_api(SimpleNamespace(submit_confirmed=overloaded, submit_batch=overloaded)))
    doc = load("replica")
    documented = doc["components"]["responses"]["Overloaded"]
    for path in ("/v1/slips", "/v1/slips/batch"):
        assert doc["paths"][path]["post"]["responses"]["429"] == {"$ref": "#/components/responses/Overloaded"}
        resp = requests.post(base + path, data=b"\x00", timeout=30)
        assert (resp.status_code, resp.headers["Retry-After"]) == (429, "1")
        assert resp.json() == {"error": "replica 0 holds 200 unordered slips (limit 200): retry later",
                               "retry_after": 0.2}
        assert set(resp.json()) == set(documented["content"]["application/json"]["schema"]["required"])
    assert set(documented["headers"]) == {"Retry-After"}


def test_the_proxy_serves_its_document_and_routes_what_it_documents(serve_app):
    from mbds_py.sharing.proxy import _app_for

    proxy = SimpleNamespace(_lock=threading.Lock(), stats={"refusals": 0}, info=dict, status=dict,
                            search_request=lambda doc: {"matches": []},
                            deposit=lambda doc: {"stored": True, "epoch": 0}, reencrypt=lambda doc: {})
    base = serve_app(_app_for(proxy))
    served_exactly(base, "proxy")
    assert exercise(base, load("proxy")) == {
        "GET /openapi.json": 200, "GET /v1/info": 200, "GET /v1/status": 200, "POST /v1/search": 200,
        "POST /v1/kfrags": 200, "POST /v1/reencrypt": 200}
    _unknown(base, "GET", "/v1/keys")
    _unknown(base, "POST", "/v1/keys", json={})


@pytest.mark.parametrize("code", list(Refusal))
def test_every_proxy_refusal_is_answered_with_a_documented_status(serve_app, code):
    """Each refusal code is answered with its status, and the document lists that status with that code."""
    from mbds_py.sharing.proxy import ProxyRefused, _app_for

    def refuse(doc: dict[str, Any]) -> None:
        raise ProxyRefused(code)

    base = serve_app(_app_for(SimpleNamespace(_lock=threading.Lock(), stats={"refusals": 0}, reencrypt=refuse)))
    resp = requests.post(base + "/v1/reencrypt", json={}, timeout=30)
    assert resp.json()["code"] == code.value and resp.status_code == code.http_status
    refusal = load("proxy")["components"]["schemas"]["Refusal"]
    assert code.value in refusal["properties"]["code"]["enum"]
    documented = {(status, c) for op in (p["post"] for p in load("proxy")["paths"].values() if "post" in p)
                  for status, r in op["responses"].items() if int(status) >= 400
                  for c in r["content"]["application/json"]["schema"]["properties"]["code"]["enum"]}
    assert (str(code.http_status), code.value) in documented


def test_the_consortium_node_serves_its_document_and_routes_what_it_documents(serve_app):
    from mbds_py.consortium.node import _app_for

    node = SimpleNamespace(status=lambda: {"head": 0}, follow=lambda: None, items_of=lambda pid, after: [],
                           submit=lambda slip, gossip: "accepted")
    base = serve_app(_app_for(node))
    served_exactly(base, "consortium")
    # the minimal bodies do not decode: answered 400 by the route, not 404
    assert exercise(base, load("consortium")) == {
        "GET /openapi.json": 200, "GET /v1/status": 200, "GET /v1/items": 200, "POST /v1/slips": 400,
        "POST /v1/proposals": 400}
    _unknown(base, "GET", "/v1/blocks")
    _unknown(base, "POST", "/v1/blocks", data=b"\x00")


# ------------------------------------------------------------------------------------------------
# the storage node's Kubo subset (docs/api/storage.md)
# ------------------------------------------------------------------------------------------------


def _table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    return rows[2:]  # past the header and the rule


def test_storage_md_lists_the_nodes_endpoints_and_add_options():
    from mbds_py.storage.node import _ADD_FIXED, _Handler

    text = (DOCS / "storage.md").read_text()
    endpoints = {row[0].strip("`") for row in _table_rows(text, "Endpoints")}
    assert endpoints == set(object.__new__(_Handler)._routes())
    options = {(row[0].strip("`"), row[1].strip("`")) for row in _table_rows(text, "Options accepted and refused")}
    assert {name for where, name in options if where == "add"} == {"pin", "only-hash", "n", *_ADD_FIXED}
    assert {f"/api/v0/{where}" for where, _ in options} <= endpoints


def test_the_storage_node_answers_every_listed_endpoint_and_404s_the_rest(tmp_path):
    from mbds_py.storage.node import serve as serve_storage

    text = (DOCS / "storage.md").read_text()
    server = serve_storage("127.0.0.1", 0, tmp_path / "node")
    try:
        added = requests.post(server.url + "/api/v0/add", files={"file": ("a", b"hello")}, timeout=30)
        cid = added.json()["Hash"]
        for row in _table_rows(text, "Endpoints"):
            endpoint = row[0].strip("`")
            if endpoint == "/api/v0/add":
                continue
            needs_arg = "`arg`" in row[1] and "optional" not in row[1]
            resp = requests.post(server.url + endpoint, params={"arg": cid} if needs_arg else {}, timeout=30)
            assert resp.status_code == 200, (endpoint, resp.text)
        missing = requests.post(server.url + "/api/v0/block/get", params={"arg": cid}, timeout=30)
        assert (missing.status_code, missing.text) == (404, "404 page not found\n")
        for endpoint, params in (("add", {"cid-version": "1"}), ("add", {"raw-leaves": "true"}),
                                 ("add", {"pin": "maybe"}), ("pin/add", {"arg": cid, "recursive": "false"}),
                                 ("pin/ls", {"type": "bogus"}), ("cat", {"arg": cid, "offset": "-1"}),
                                 ("cat", {"arg": cid, "length": "x"}), ("cat", {})):
            refused = requests.post(f"{server.url}/api/v0/{endpoint}", params=params,
                                    files={"file": ("a", b"hello")} if endpoint == "add" else None, timeout=30)
            assert (refused.status_code, refused.json()["Code"], refused.json()["Type"]) == (400, 1, "error"), params
        assert requests.get(server.url + "/api/v0/version", timeout=30).status_code == 405
        origin = requests.post(server.url + "/api/v0/version", headers={"Origin": "http://x.example"}, timeout=30)
        assert origin.status_code == 403
        ignored = requests.post(server.url + "/api/v0/add", params={"stream-channels": "true", "progress": "false"},
                                files={"file": ("a", b"hello")}, timeout=30)
        assert ignored.status_code == 200 and ignored.json()["Hash"] == cid
    finally:
        server.shutdown()
